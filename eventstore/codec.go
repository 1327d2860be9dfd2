package eventstore

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// Encode renders a domain event as its subject and ledger JSON.
func Encode(e domain.Event) (subject string, body []byte, err error) {
	var (
		typ  string
		data any
	)
	switch d := e.Data.(type) {
	case domain.KeyCreated:
		typ = schemas.EventAPIKeyCreated
		data = schemas.APIKeyCreatedData{
			ID: d.KeyID, Name: d.Name, Owner: schemas.Owner{Type: string(d.Owner.Type), ID: d.Owner.ID},
			Permissions: nonNil(d.Permissions), ObfuscatedValue: d.Obfuscated,
			Hash: hex.EncodeToString(d.Hash[:]), ExpiresAt: d.ExpiresAt,
		}
	case domain.KeyRevoked:
		typ = schemas.EventAPIKeyRevoked
		data = schemas.APIKeyRevokedData{ID: d.KeyID, Reason: string(d.Reason)}
	case domain.MemberRemoved:
		typ = schemas.EventMemberRemoved
		data = schemas.MemberRemovedData{UserID: d.UserID, RevokedAPIKeyIDs: nonNil(d.RevokedKeyIDs)}
	case domain.CataloguePermissionsSet:
		typ = schemas.EventAPIKeyPermissionsSaved
		data = schemas.PermissionsUpdatedData{Permissions: nonNil(d.Permissions), PreviousPermissions: nonNil(d.Previous)}
	case domain.WebhookEndpointCreated:
		typ = schemas.EventWebhookEndpointCreated
		data = schemas.WebhookEndpointData{ID: d.EndpointID, URL: d.URL, Events: nonNil(d.Events), SealedSecret: d.Secret}
	case domain.WebhookEndpointUpdated:
		typ = schemas.EventWebhookEndpointUpdated
		data = schemas.WebhookEndpointData{ID: d.EndpointID, URL: d.URL, Events: nonNil(d.Events)}
	case domain.WebhookSecretRotated:
		typ = schemas.EventWebhookEndpointSecretRotated
		data = schemas.WebhookSecretRotatedData{ID: d.EndpointID, SealedSecret: d.Secret, PreviousExpiresAt: d.PreviousExpiresAt.UTC()}
	case domain.WebhookEndpointDisabled:
		typ = schemas.EventWebhookEndpointDisabled
		data = schemas.WebhookEndpointStateData{ID: d.EndpointID, Reason: d.Reason}
	case domain.WebhookEndpointEnabled:
		typ = schemas.EventWebhookEndpointEnabled
		data = schemas.WebhookEndpointStateData{ID: d.EndpointID}
	case domain.WebhookEndpointDeleted:
		typ = schemas.EventWebhookEndpointDeleted
		data = schemas.WebhookEndpointStateData{ID: d.EndpointID}
	default:
		return "", nil, fmt.Errorf("eventstore: encode: unknown event data %T", e.Data)
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return "", nil, fmt.Errorf("eventstore: encode %s: %w", typ, err)
	}
	env := schemas.Envelope{
		ID: e.ID, Event: typ, Version: schemas.EventVersion, CreatedAt: e.CreatedAt.UTC(),
		Actor: schemas.Actor{Type: string(e.Actor.Type), ID: e.Actor.ID}, Data: raw,
	}
	if e.OrganizationID != "" {
		org := e.OrganizationID
		env.OrganizationID = &org
	}
	body, err = json.Marshal(env)
	if err != nil {
		return "", nil, fmt.Errorf("eventstore: encode %s: %w", typ, err)
	}
	return schemas.Subject(e.OrganizationID, e.AggregateID, typ), body, nil
}

// Decode parses one ledger message. seq is its stream sequence.
//
// Events as Encode writes them take a single pass (decodeFast); anything
// that pass does not accept, including every malformed message, goes
// through encoding/json (decodeJSON), which gives the same event or the
// error.
func Decode(subject string, body []byte, seq uint64) (domain.Event, error) {
	if e, ok := decodeFast(subject, body, seq); ok {
		return e, nil
	}
	return decodeJSON(subject, body, seq)
}

// decodeJSON is Decode with encoding/json: the envelope, then its data.
func decodeJSON(subject string, body []byte, seq uint64) (domain.Event, error) {
	var env schemas.Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return domain.Event{}, fmt.Errorf("eventstore: decode seq %d: %w", seq, err)
	}
	if env.Version != schemas.EventVersion {
		return domain.Event{}, fmt.Errorf("eventstore: decode seq %d: %s version %d not supported", seq, env.Event, env.Version)
	}
	e := domain.Event{
		ID: env.ID, CreatedAt: env.CreatedAt, Seq: seq,
		Actor: domain.Actor{Type: domain.ActorType(env.Actor.Type), ID: env.Actor.ID},
	}
	if env.OrganizationID != nil {
		e.OrganizationID = *env.OrganizationID
	}
	bad := func(err error) (domain.Event, error) {
		return domain.Event{}, fmt.Errorf("eventstore: decode seq %d %s: %w", seq, env.Event, err)
	}
	switch env.Event {
	case schemas.EventAPIKeyCreated:
		var d schemas.APIKeyCreatedData
		if err := json.Unmarshal(env.Data, &d); err != nil {
			return bad(err)
		}
		var h domain.KeyHash
		if len(d.Hash) != hex.EncodedLen(len(h)) {
			return bad(fmt.Errorf("bad hash"))
		}
		if n, err := hex.Decode(h[:], []byte(d.Hash)); err != nil || n != len(h) {
			return bad(fmt.Errorf("bad hash"))
		}
		ot, err := domain.ParseOwnerType(d.Owner.Type)
		if err != nil {
			return bad(err)
		}
		e.AggregateID = d.ID
		e.Data = domain.KeyCreated{KeyID: d.ID, Name: d.Name, Owner: domain.Owner{Type: ot, ID: d.Owner.ID},
			Permissions: nonNil(d.Permissions), Hash: h, Obfuscated: d.ObfuscatedValue, ExpiresAt: d.ExpiresAt}
	case schemas.EventAPIKeyRevoked:
		var d schemas.APIKeyRevokedData
		if err := json.Unmarshal(env.Data, &d); err != nil {
			return bad(err)
		}
		e.AggregateID = d.ID
		e.Data = domain.KeyRevoked{KeyID: d.ID, Reason: domain.RevokeReason(d.Reason)}
	case schemas.EventMemberRemoved:
		var d schemas.MemberRemovedData
		if err := json.Unmarshal(env.Data, &d); err != nil {
			return bad(err)
		}
		e.AggregateID = d.UserID
		e.Data = domain.MemberRemoved{UserID: d.UserID, RevokedKeyIDs: nonNil(d.RevokedAPIKeyIDs)}
	case schemas.EventAPIKeyPermissionsSaved:
		var d schemas.PermissionsUpdatedData
		if err := json.Unmarshal(env.Data, &d); err != nil {
			return bad(err)
		}
		e.AggregateID = domain.CatalogueAggregateID
		e.Data = domain.CataloguePermissionsSet{Permissions: nonNil(d.Permissions), Previous: nonNil(d.PreviousPermissions)}
	case schemas.EventWebhookEndpointCreated, schemas.EventWebhookEndpointUpdated:
		var d schemas.WebhookEndpointData
		if err := json.Unmarshal(env.Data, &d); err != nil {
			return bad(err)
		}
		e.AggregateID = d.ID
		if env.Event == schemas.EventWebhookEndpointCreated {
			e.Data = domain.WebhookEndpointCreated{EndpointID: d.ID, URL: d.URL, Events: nonNil(d.Events), Secret: d.SealedSecret}
		} else {
			e.Data = domain.WebhookEndpointUpdated{EndpointID: d.ID, URL: d.URL, Events: nonNil(d.Events)}
		}
	case schemas.EventWebhookEndpointSecretRotated:
		var d schemas.WebhookSecretRotatedData
		if err := json.Unmarshal(env.Data, &d); err != nil {
			return bad(err)
		}
		e.AggregateID = d.ID
		e.Data = domain.WebhookSecretRotated{EndpointID: d.ID, Secret: d.SealedSecret, PreviousExpiresAt: d.PreviousExpiresAt}
	case schemas.EventWebhookEndpointDisabled, schemas.EventWebhookEndpointEnabled, schemas.EventWebhookEndpointDeleted:
		var d schemas.WebhookEndpointStateData
		if err := json.Unmarshal(env.Data, &d); err != nil {
			return bad(err)
		}
		e.AggregateID = d.ID
		switch env.Event {
		case schemas.EventWebhookEndpointDisabled:
			e.Data = domain.WebhookEndpointDisabled{EndpointID: d.ID, Reason: d.Reason}
		case schemas.EventWebhookEndpointEnabled:
			e.Data = domain.WebhookEndpointEnabled{EndpointID: d.ID}
		default:
			e.Data = domain.WebhookEndpointDeleted{EndpointID: d.ID}
		}
	default:
		return domain.Event{}, fmt.Errorf("eventstore: decode seq %d: unknown event type %q", seq, env.Event)
	}
	if want := schemas.Subject(e.OrganizationID, e.AggregateID, env.Event); subject != "" && subject != want {
		return domain.Event{}, fmt.Errorf("eventstore: decode seq %d: subject %q does not match its event (%q)", seq, subject, want)
	}
	return e, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// decodeFast decodes body in one pass, without reflection, when it is an
// event as Encode writes it: known fields only, each at most once, "event"
// before "data", strings without escapes, valid UTF-8. It reports false for
// anything else, and for every event decodeJSON would refuse, so that
// Decode then gives decodeJSON's answer: when it reports true, the event is
// the one decodeJSON returns.
func decodeFast(subject string, body []byte, seq uint64) (domain.Event, bool) {
	d := fastDecoder{s: string(body)}
	var (
		e       domain.Event
		typ     string
		version int
		org     *string
		seen    uint8
		data    fastData
	)
	const (
		fID = 1 << iota
		fEvent
		fVersion
		fCreatedAt
		fOrg
		fActor
		fData
	)
	ok := d.object(func(key string) bool {
		var f uint8
		switch key {
		case "id":
			f = fID
		case "event":
			f = fEvent
		case "version":
			f = fVersion
		case "created_at":
			f = fCreatedAt
		case "organization_id":
			f = fOrg
		case "actor":
			f = fActor
		case "data":
			f = fData
		default:
			return false
		}
		if seen&f != 0 {
			return false
		}
		seen |= f
		switch f {
		case fID:
			return d.str(&e.ID)
		case fEvent:
			var t string
			if !d.str(&t) {
				return false
			}
			for _, known := range schemas.EventTypes {
				if t == known {
					typ = known
					return true
				}
			}
			return false
		case fVersion:
			return d.smallInt(&version)
		case fCreatedAt:
			return d.time(&e.CreatedAt)
		case fOrg:
			if d.null() {
				return true
			}
			var o string
			if !d.str(&o) {
				return false
			}
			org = &o
			return true
		case fActor:
			var at string
			if !d.owner(&at, &e.Actor.ID) {
				return false
			}
			e.Actor.Type = domain.ActorType(at)
			return true
		default: // fData
			return typ != "" && d.data(typ, &data)
		}
	})
	if !ok || !d.end() || seen&fData == 0 || version != schemas.EventVersion {
		return domain.Event{}, false
	}
	e.Seq = seq
	if org != nil {
		e.OrganizationID = *org
	}
	switch typ {
	case schemas.EventAPIKeyCreated:
		var h domain.KeyHash
		if !decodeHex(h[:], data.hash) {
			return domain.Event{}, false
		}
		var ot domain.OwnerType
		switch data.owner.Type {
		case string(domain.OwnerUser):
			ot = domain.OwnerUser
		case string(domain.OwnerOrganization):
			ot = domain.OwnerOrganization
		default:
			return domain.Event{}, false
		}
		e.AggregateID = data.id
		e.Data = domain.KeyCreated{KeyID: data.id, Name: data.name, Owner: domain.Owner{Type: ot, ID: data.owner.ID},
			Permissions: nonNil(data.permissions), Hash: h, Obfuscated: data.obfuscated, ExpiresAt: data.expiresAt}
	case schemas.EventAPIKeyRevoked:
		e.AggregateID = data.id
		e.Data = domain.KeyRevoked{KeyID: data.id, Reason: domain.RevokeReason(data.reason)}
	case schemas.EventMemberRemoved:
		e.AggregateID = data.userID
		e.Data = domain.MemberRemoved{UserID: data.userID, RevokedKeyIDs: nonNil(data.revokedIDs)}
	case schemas.EventAPIKeyPermissionsSaved:
		e.AggregateID = domain.CatalogueAggregateID
		e.Data = domain.CataloguePermissionsSet{Permissions: nonNil(data.permissions), Previous: nonNil(data.previous)}
	}
	if subject != "" && !isSubject(subject, e.OrganizationID, e.AggregateID, typ) {
		return domain.Event{}, false
	}
	return e, true
}

// isSubject reports whether subject is schemas.Subject(org, aggregate,
// eventType), without building it.
func isSubject(subject, org, aggregate, eventType string) bool {
	if org == "" {
		org = schemas.SystemOrganization
	}
	for i, part := range [...]string{schemas.SubjectRoot, org, aggregate, eventType} {
		if i > 0 {
			if len(subject) == 0 || subject[0] != '.' {
				return false
			}
			subject = subject[1:]
		}
		if len(subject) < len(part) || subject[:len(part)] != part {
			return false
		}
		subject = subject[len(part):]
	}
	return subject == ""
}

// fastData is the union of the data fields of every event type.
type fastData struct {
	id, name, obfuscated, hash, reason, userID string
	owner                                      schemas.Owner
	permissions, previous, revokedIDs          []string
	expiresAt                                  *time.Time
}

// data decodes the data object of an event of type typ; a field that type
// does not have is refused.
func (d *fastDecoder) data(typ string, out *fastData) bool {
	var seen uint16
	return d.object(func(key string) bool {
		var f uint16
		switch typ {
		case schemas.EventAPIKeyCreated:
			switch key {
			case "id":
				f = 1
			case "name":
				f = 2
			case "owner":
				f = 4
			case "permissions":
				f = 8
			case "obfuscated_value":
				f = 16
			case "hash":
				f = 32
			case "expires_at":
				f = 64
			}
		case schemas.EventAPIKeyRevoked:
			switch key {
			case "id":
				f = 1
			case "reason":
				f = 128
			}
		case schemas.EventMemberRemoved:
			switch key {
			case "user_id":
				f = 256
			case "revoked_api_key_ids":
				f = 512
			}
		case schemas.EventAPIKeyPermissionsSaved:
			switch key {
			case "permissions":
				f = 8
			case "previous_permissions":
				f = 1024
			}
		}
		if f == 0 || seen&f != 0 {
			return false
		}
		seen |= f
		switch f {
		case 1:
			return d.str(&out.id)
		case 2:
			return d.str(&out.name)
		case 4:
			return d.owner(&out.owner.Type, &out.owner.ID)
		case 8:
			return d.strs(&out.permissions)
		case 16:
			return d.str(&out.obfuscated)
		case 32:
			return d.str(&out.hash)
		case 64:
			if d.null() {
				return true
			}
			var t time.Time
			if !d.time(&t) {
				return false
			}
			out.expiresAt = &t
			return true
		case 128:
			return d.str(&out.reason)
		case 256:
			return d.str(&out.userID)
		case 512:
			return d.strs(&out.revokedIDs)
		default: // 1024
			return d.strs(&out.previous)
		}
	})
}

// fastDecoder reads the JSON subset decodeFast accepts. Its strings are
// slices of s, the message copied once.
type fastDecoder struct {
	s string
	i int
}

func (d *fastDecoder) ws() {
	for d.i < len(d.s) && d.s[d.i] <= ' ' {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// end reports whether only white space is left.
func (d *fastDecoder) end() bool {
	d.ws()
	return d.i == len(d.s)
}

func (d *fastDecoder) byte(c byte) bool {
	d.ws()
	if d.i < len(d.s) && d.s[d.i] == c {
		d.i++
		return true
	}
	return false
}

// object reads {"key": value, ...}, letting field read each value; field
// returns false to refuse the key or its value.
func (d *fastDecoder) object(field func(key string) bool) bool {
	if !d.byte('{') {
		return false
	}
	if d.byte('}') {
		return true
	}
	for {
		var key string
		if !d.str(&key) || !d.byte(':') {
			return false
		}
		d.ws()
		if !field(key) {
			return false
		}
		if d.byte(',') {
			continue
		}
		return d.byte('}')
	}
}

// owner reads {"type": ..., "id": ...}, the form of an owner and an actor.
func (d *fastDecoder) owner(typ, id *string) bool {
	var seen uint8
	return d.object(func(key string) bool {
		switch {
		case key == "type" && seen&1 == 0:
			seen |= 1
			return d.str(typ)
		case key == "id" && seen&2 == 0:
			seen |= 2
			return d.str(id)
		}
		return false
	})
}

// str reads a string without escapes or control characters, in valid
// UTF-8: one encoding/json would decode to exactly its bytes.
func (d *fastDecoder) str(out *string) bool {
	d.ws()
	if d.i >= len(d.s) || d.s[d.i] != '"' {
		return false
	}
	start := d.i + 1
	n := strings.IndexByte(d.s[start:], '"')
	if n < 0 {
		return false
	}
	v := d.s[start : start+n]
	if !plainASCII(v) {
		// Escapes and control characters are refused; other text is taken
		// as it is if it is valid UTF-8.
		for i := 0; i < len(v); i++ {
			if c := v[i]; c == '\\' || c < 0x20 {
				return false
			}
		}
		if !utf8.ValidString(v) {
			return false
		}
	}
	*out = v
	d.i = start + n + 1
	return true
}

// plainASCII reports whether s is printable ASCII without a backslash,
// eight bytes at a time.
func plainASCII(s string) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	for len(s) >= 8 {
		x := binary.LittleEndian.Uint64([]byte(s[:8]))
		b := x ^ (ones * '\\')
		// A high bit, a byte below 0x20, or a backslash.
		if (x|(x-ones*0x20)|(b-ones)&^b)&highs != 0 {
			return false
		}
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '\\' {
			return false
		}
	}
	return true
}

// strs reads an array of strings; null is a nil slice.
func (d *fastDecoder) strs(out *[]string) bool {
	if d.null() {
		*out = nil
		return true
	}
	if !d.byte('[') {
		return false
	}
	v := []string{}
	if !d.byte(']') {
		for {
			var s string
			if !d.str(&s) {
				return false
			}
			v = append(v, s)
			if d.byte(',') {
				continue
			}
			if !d.byte(']') {
				return false
			}
			break
		}
	}
	*out = v
	return true
}

func (d *fastDecoder) null() bool {
	d.ws()
	if strings.HasPrefix(d.s[d.i:], "null") {
		d.i += len("null")
		return true
	}
	return false
}

// smallInt reads a non-negative integer of at most 9 digits.
func (d *fastDecoder) smallInt(out *int) bool {
	d.ws()
	start, n := d.i, 0
	for d.i < len(d.s) && d.s[d.i] >= '0' && d.s[d.i] <= '9' && d.i-start < 9 {
		n = n*10 + int(d.s[d.i]-'0')
		d.i++
	}
	digits := d.i - start
	if digits == 0 || (digits > 1 && d.s[start] == '0') {
		return false
	}
	if d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r', ',', '}', ']':
		default: // a longer number, a fraction or an exponent
			return false
		}
	}
	*out = n
	return true
}

// time reads a time as encoding/json does: time.Time.UnmarshalJSON on the
// quoted string as it stands.
func (d *fastDecoder) time(out *time.Time) bool {
	d.ws()
	start := d.i
	var s string
	if !d.str(&s) {
		return false
	}
	var buf [64]byte
	return out.UnmarshalJSON(append(buf[:0], d.s[start:d.i]...)) == nil
}

// decodeHex decodes exactly len(dst) bytes of hex, either case, as
// hex.Decode does.
func decodeHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := fromHex(s[2*i])
		lo, ok2 := fromHex(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
