package consumers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// Format is how an audit sink renders each event. Every format is rendered
// from the event's public form (schemas.PublicEvent) alone, which never
// carries a key's value, a key's hash or a secret: a renderer cannot leak
// what it is never given.
type Format string

const (
	// FormatNative is the public event as the API, webhooks and the events
	// feed show it (schema: schemas/public/event.json).
	FormatNative Format = "native"
	// FormatCloudEvents is a CloudEvents 1.0 event in the structured JSON
	// format (application/cloudevents+json).
	FormatCloudEvents Format = "cloudevents"
	// FormatOCSF is an OCSF 1.3 "Entity Management" event (class_uid 3004).
	FormatOCSF Format = "ocsf"
)

// Formats lists every format.
var Formats = []Format{FormatNative, FormatCloudEvents, FormatOCSF}

// ParseFormat parses a format name.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats {
		if s == string(f) {
			return f, nil
		}
	}
	return "", fmt.Errorf("unknown format %q: want native, cloudevents or ocsf", s)
}

// RenderOptions tunes a rendering.
type RenderOptions struct {
	// Source is the CloudEvents source (a URI-reference) of operator-wide
	// events, and the prefix of the others': <Source>/organizations/<org>.
	// Default DefaultCloudEventsSource.
	Source string
}

// DefaultCloudEventsSource is the CloudEvents source when none is set.
const DefaultCloudEventsSource = "/keyledger"

// Render renders one public event in a format with the default options:
// one JSON document, without a trailing newline.
func Render(f Format, ev schemas.PublicEvent) ([]byte, error) {
	return RenderWith(f, ev, RenderOptions{})
}

// RenderWith renders one public event in a format: one JSON document on one
// line, without a trailing newline.
func RenderWith(f Format, ev schemas.PublicEvent, o RenderOptions) ([]byte, error) {
	if ev.ID == "" || ev.Event == "" {
		return nil, errors.New("consumers: render: the event has no id or no type")
	}
	if d := bytes.TrimSpace(ev.Data); len(d) == 0 || d[0] != '{' || !json.Valid(d) {
		return nil, fmt.Errorf("consumers: render %s: the event's data is not a JSON object", ev.ID)
	}
	var v any
	switch f {
	case FormatNative:
		v = ev
	case FormatCloudEvents:
		ce, err := cloudEvent(ev, o)
		if err != nil {
			return nil, err
		}
		v = ce
	case FormatOCSF:
		oe, err := ocsfEvent(ev)
		if err != nil {
			return nil, err
		}
		v = oe
	default:
		return nil, fmt.Errorf("consumers: render: unknown format %q", f)
	}
	out, err := renderJSON(v)
	if err != nil {
		return nil, fmt.Errorf("consumers: render %s as %s: %w", ev.ID, f, err)
	}
	return out, nil
}

// renderJSON is json.Marshal without HTML escaping (<, > and & stay as they
// are, for people reading the logs), on one line.
func renderJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}

// ----------------------------------------------------------------------------
// CloudEvents 1.0
//
// The mapping:
//   - id: the event id (event_<ULID>), the same on every delivery, so
//     source+id is unique and a receiver dedupes on it.
//   - source: <Source> for operator-wide events (the permission catalogue),
//     <Source>/organizations/<organization id> for the others; Source is
//     "/keyledger" unless configured (any URI-reference, for example
//     "https://keys.example.com").
//   - type: "dev.keyledger." + the event type, e.g.
//     "dev.keyledger.api_key.created": reverse-DNS of keyledger.dev (the
//     domain of keyledger's JSON Schema ids), as the spec recommends, then
//     keyledger's own, stable event type unchanged, so a receiver maps one
//     to the other by stripping the prefix. It carries no version: keyledger
//     changes an event type's data only compatibly (the public schema).
//   - subject: what the event is about, within the source: the API key id
//     (api_key.*), the user id (organization_member.removed),
//     "api_key_permissions" (the catalogue), else data.id when there is one.
//   - time: created_at (RFC 3339, UTC); datacontenttype: application/json;
//     data: the public event's data, unchanged.
//   - extensions (lowercase alphanumeric names, at most 20 characters):
//     keyledgerseq, the ledger sequence as a decimal string (a CloudEvents
//     Integer is 32-bit; a ledger sequence is 64-bit); keyledgerorg, the
//     organization id (absent for operator-wide events); keyledgeractortype
//     and keyledgeractorid, who caused the event.

// CloudEventsTypePrefix prefixes keyledger's event types in CloudEvents.
const CloudEventsTypePrefix = "dev.keyledger."

type ceEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            string          `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	Seq             string          `json:"keyledgerseq"`
	Org             string          `json:"keyledgerorg,omitempty"`
	ActorType       string          `json:"keyledgeractortype,omitempty"`
	ActorID         string          `json:"keyledgeractorid,omitempty"`
}

func cloudEvent(ev schemas.PublicEvent, o RenderOptions) (ceEvent, error) {
	src := strings.TrimSuffix(o.Source, "/")
	if src == "" {
		src = DefaultCloudEventsSource
	}
	org := ""
	if ev.Context.OrganizationID != nil {
		org = *ev.Context.OrganizationID
		src += "/organizations/" + url.PathEscape(org)
	}
	subject, err := subjectOf(ev)
	if err != nil {
		return ceEvent{}, err
	}
	return ceEvent{
		SpecVersion: "1.0", ID: ev.ID, Source: src, Type: CloudEventsTypePrefix + ev.Event, Subject: subject,
		Time: ev.CreatedAt.UTC().Format(time.RFC3339Nano), DataContentType: "application/json", Data: ev.Data,
		Seq: strconv.FormatUint(ev.Context.LedgerSequence, 10), Org: org,
		ActorType: ev.Context.Actor.Type, ActorID: ev.Context.Actor.ID,
	}, nil
}

// eventRefs is what identifies the object of an event, in any event type's data.
type eventRefs struct {
	ID     string `json:"id"`
	UserID string `json:"user_id"`
}

func eventDataRefs(ev schemas.PublicEvent) (eventRefs, error) {
	var r eventRefs
	// A field of another JSON type (a future event's numeric id) is not a
	// reference: decode leniently.
	var m map[string]json.RawMessage
	if err := json.Unmarshal(ev.Data, &m); err != nil {
		return r, fmt.Errorf("consumers: render %s: %w", ev.ID, err)
	}
	_ = json.Unmarshal(m["id"], &r.ID)
	_ = json.Unmarshal(m["user_id"], &r.UserID)
	return r, nil
}

func subjectOf(ev schemas.PublicEvent) (string, error) {
	r, err := eventDataRefs(ev)
	if err != nil {
		return "", err
	}
	switch ev.Event {
	case schemas.EventMemberRemoved:
		return r.UserID, nil
	case schemas.EventAPIKeyPermissionsSaved:
		return domain.CatalogueAggregateID, nil
	default: // api_key.created, api_key.revoked, and future events
		return r.ID, nil
	}
}

// ----------------------------------------------------------------------------
// OCSF
//
// The class is Entity Management (class_uid 3004, category Identity & Access
// Management, 3), for every keyledger event:
//   - keyledger's events are the lifecycle of managed IAM objects: an API key
//     (a credential) is created, revoked, its permission catalogue updated;
//     Entity Management reports create/update/delete/enable/disable of a
//     managed entity by an administrator or a service, and its required
//     `entity` (Managed Entity: uid, name, type, data) holds an API key, a
//     membership or the catalogue as they are.
//   - Account Change (3001) would be wrong: its required `user` is the user
//     account being changed, and its activities are an account's (password
//     change, MFA factor, lock). An API key is not an account: filling `user`
//     with a key would have SIEM rules see "account created" for each key,
//     and user.uid collide with real users.
//   - One class for every event, future ones included (activity Other),
//     keeps one parser on the SIEM side.
//
// The mapping (type_uid = 3004·100 + activity_id):
//   - api_key.created: Create (1); entity = the API key (uid its id, name
//     its name, type "API Key", data the public key object, without value).
//   - api_key.revoked: Disable (9), as the key stays listed, revoked, and
//     can never authenticate again (not Delete: nothing is erased); comment =
//     the revoke reason; severity Medium for a leaked key, else
//     Informational.
//   - organization_member.removed: Delete (4) of the membership; entity =
//     the organization member (uid the user id, type "Organization Member",
//     data with the ids of the keys revoked with it).
//   - api_key_permissions.updated: Update (3) of the permission catalogue;
//     entity = the catalogue before (previous permissions), entity_result =
//     after.
//   - any other (future) type, <object>.<verb>: the activity of its verb
//     (created Create, updated Update, deleted and removed Delete, enabled
//     Enable (8), disabled Disable), else Other (99) with activity_name the
//     event type; entity uid data.id when it is a string (else name the
//     event type), type the object, data the public data.
//
// Every event: status Success (events are facts), time = created_at in ms,
// actor.user = who caused it (type_id Admin, User, System, or Other for an
// API key), metadata {version, product {name, vendor_name}, uid = event id,
// event_code = event type, sequence = ledger sequence (when it fits OCSF's
// 32-bit integer_t)}, unmapped {organization_id, ledger_sequence}.

// OCSF constants.
const (
	OCSFVersion     = "1.3.0"
	OCSFClassUID    = 3004
	OCSFCategoryUID = 3
)

// OCSF activity ids of Entity Management.
const (
	OCSFActivityCreate  = 1
	OCSFActivityUpdate  = 3
	OCSFActivityDelete  = 4
	OCSFActivityEnable  = 8
	OCSFActivityDisable = 9
	OCSFActivityOther   = 99
)

var ocsfActivityNames = map[int]string{
	OCSFActivityCreate: "Create", OCSFActivityUpdate: "Update", OCSFActivityDelete: "Delete",
	OCSFActivityEnable: "Enable", OCSFActivityDisable: "Disable", OCSFActivityOther: "Other",
}

// ocsfVerbActivities maps the verb of a future event type to an activity.
var ocsfVerbActivities = map[string]int{
	"created": OCSFActivityCreate, "updated": OCSFActivityUpdate, "deleted": OCSFActivityDelete,
	"removed": OCSFActivityDelete, "enabled": OCSFActivityEnable, "disabled": OCSFActivityDisable,
}

// OCSF severity ids.
const (
	ocsfSeverityInformational = 1
	ocsfSeverityMedium        = 3
)

type ocsfEv struct {
	ActivityID   int            `json:"activity_id"`
	ActivityName string         `json:"activity_name"`
	CategoryUID  int            `json:"category_uid"`
	CategoryName string         `json:"category_name"`
	ClassUID     int            `json:"class_uid"`
	ClassName    string         `json:"class_name"`
	TypeUID      int            `json:"type_uid"`
	TypeName     string         `json:"type_name"`
	SeverityID   int            `json:"severity_id"`
	Severity     string         `json:"severity"`
	StatusID     int            `json:"status_id"`
	Status       string         `json:"status"`
	Time         int64          `json:"time"`
	Message      string         `json:"message"`
	Metadata     ocsfMetadata   `json:"metadata"`
	Actor        *ocsfActor     `json:"actor,omitempty"`
	Entity       ocsfEntity     `json:"entity"`
	EntityResult *ocsfEntity    `json:"entity_result,omitempty"`
	Comment      string         `json:"comment,omitempty"`
	Unmapped     map[string]any `json:"unmapped"`
}

type ocsfMetadata struct {
	Version   string      `json:"version"`
	Product   ocsfProduct `json:"product"`
	UID       string      `json:"uid"`
	EventCode string      `json:"event_code"`
	Sequence  *uint64     `json:"sequence,omitempty"`
}

type ocsfProduct struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
}

type ocsfActor struct {
	User ocsfUser `json:"user"`
}

type ocsfUser struct {
	UID    string `json:"uid"`
	Type   string `json:"type"`
	TypeID int    `json:"type_id"`
}

type ocsfEntity struct {
	UID  string `json:"uid,omitempty"`
	Name string `json:"name,omitempty"`
	Type string `json:"type"`
	Data any    `json:"data,omitempty"`
}

func ocsfEvent(ev schemas.PublicEvent) (ocsfEv, error) {
	r, err := eventDataRefs(ev)
	if err != nil {
		return ocsfEv{}, err
	}
	org := ""
	if ev.Context.OrganizationID != nil {
		org = *ev.Context.OrganizationID
	}
	out := ocsfEv{
		CategoryUID: OCSFCategoryUID, CategoryName: "Identity & Access Management",
		ClassUID: OCSFClassUID, ClassName: "Entity Management",
		SeverityID: ocsfSeverityInformational, StatusID: 1, Status: "Success",
		Time: ev.CreatedAt.UnixMilli(),
		Metadata: ocsfMetadata{
			Version: OCSFVersion, Product: ocsfProduct{Name: "keyledger", VendorName: "keyledger"},
			UID: ev.ID, EventCode: ev.Event,
		},
		Unmapped: map[string]any{"ledger_sequence": ev.Context.LedgerSequence},
	}
	if org != "" {
		out.Unmapped["organization_id"] = org
	}
	if seq := ev.Context.LedgerSequence; seq <= math.MaxInt32 {
		out.Metadata.Sequence = &seq
	}
	if a := ev.Context.Actor; a.Type != "" || a.ID != "" {
		u := ocsfUser{UID: a.ID, Type: a.Type, TypeID: 99}
		switch a.Type {
		case string(domain.ActorUser):
			u.Type, u.TypeID = "User", 1
		case string(domain.ActorAdmin):
			u.Type, u.TypeID = "Admin", 2
		case string(domain.ActorSystem):
			u.Type, u.TypeID = "System", 3
		}
		out.Actor = &ocsfActor{User: u}
	}
	data := ev.Data
	switch ev.Event {
	case schemas.EventAPIKeyCreated:
		var d schemas.PublicAPIKeyCreated
		if err := json.Unmarshal(data, &d); err != nil {
			return ocsfEv{}, fmt.Errorf("consumers: render %s: %w", ev.ID, err)
		}
		out.ActivityID = OCSFActivityCreate
		out.Entity = ocsfEntity{UID: d.ID, Name: d.Name, Type: "API Key", Data: data}
		out.Message = fmt.Sprintf("API key %s created in organization %s", d.ID, d.OrganizationID)
	case schemas.EventAPIKeyRevoked:
		var d schemas.PublicAPIKeyRevoked
		if err := json.Unmarshal(data, &d); err != nil {
			return ocsfEv{}, fmt.Errorf("consumers: render %s: %w", ev.ID, err)
		}
		out.ActivityID = OCSFActivityDisable
		out.Entity = ocsfEntity{UID: d.ID, Type: "API Key", Data: data}
		out.Comment = d.RevokeReason
		out.Message = fmt.Sprintf("API key %s revoked (%s)", d.ID, d.RevokeReason)
		if d.RevokeReason == string(domain.ReasonLeaked) {
			out.SeverityID = ocsfSeverityMedium
		}
	case schemas.EventMemberRemoved:
		var d schemas.PublicMemberRemoved
		if err := json.Unmarshal(data, &d); err != nil {
			return ocsfEv{}, fmt.Errorf("consumers: render %s: %w", ev.ID, err)
		}
		out.ActivityID = OCSFActivityDelete
		out.Entity = ocsfEntity{UID: d.UserID, Type: "Organization Member", Data: data}
		out.Message = fmt.Sprintf("user %s removed from organization %s; %d API keys revoked", d.UserID, d.OrganizationID, len(d.RevokedAPIKeyIDs))
	case schemas.EventAPIKeyPermissionsSaved:
		var d schemas.PublicPermissionsUpdated
		if err := json.Unmarshal(data, &d); err != nil {
			return ocsfEv{}, fmt.Errorf("consumers: render %s: %w", ev.ID, err)
		}
		out.ActivityID = OCSFActivityUpdate
		cat := func(perms []string) *ocsfEntity {
			return &ocsfEntity{UID: domain.CatalogueAggregateID, Name: "API key permission catalogue", Type: "Permission Catalogue",
				Data: map[string]any{"permissions": renderNonNil(perms)}}
		}
		out.Entity = *cat(d.PreviousPermissions)
		out.EntityResult = cat(d.Permissions)
		out.Message = fmt.Sprintf("API key permission catalogue updated: %d permissions, %d before", len(d.Permissions), len(d.PreviousPermissions))
	default:
		typ, verb := ev.Event, ""
		if i := strings.LastIndexByte(typ, '.'); i > 0 {
			typ, verb = typ[:i], typ[i+1:]
		}
		out.ActivityID = OCSFActivityOther
		if a, ok := ocsfVerbActivities[verb]; ok {
			out.ActivityID = a
		}
		out.Entity = ocsfEntity{UID: r.ID, Type: typ, Data: data}
		if r.ID == "" {
			out.Entity.Name = ev.Event // a Managed Entity needs a uid or a name
		}
		out.Message = "keyledger event " + ev.Event
	}
	out.ActivityName = ocsfActivityNames[out.ActivityID]
	if out.ActivityID == OCSFActivityOther {
		out.ActivityName = ev.Event
	}
	out.TypeUID = OCSFClassUID*100 + out.ActivityID
	out.TypeName = "Entity Management: " + ocsfActivityNames[out.ActivityID]
	out.Severity = map[int]string{ocsfSeverityInformational: "Informational", ocsfSeverityMedium: "Medium"}[out.SeverityID]
	return out, nil
}

func renderNonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
