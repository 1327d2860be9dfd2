package eventstore

// The two ways Decode reads a message, and the single pass's check of a
// string, for tests that compare them.
var (
	DecodeFast = decodeFast
	DecodeJSON = decodeJSON
	PlainASCII = plainASCII
)
