package eventstore

// The two ways Decode reads a message, and the single pass's check of a
// string, for tests that compare them.
var (
	DecodeFast = decodeFast
	DecodeJSON = decodeJSON
	PlainASCII = plainASCII
)

// SetFeedBuffer makes the live feed's buffer n messages, so that a test can
// make NATS drop some.
func SetFeedBuffer(s *Store, n int) { s.feedBuffer = n }
