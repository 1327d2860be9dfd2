package api

import (
	"encoding/base64"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// listEvents serves the events feed: GET /events?events=&organization_id=
// &after=&limit=&range_start=&range_end=&order=, in ledger order (oldest
// first, or newest first with order=desc).
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request, _ domain.Actor) {
	if s.cfg.Feed == nil {
		writeError(w, http.StatusNotFound, "route_not_found", "the events feed is not served here")
		return
	}
	q := r.URL.Query()
	eq := schemas.EventsQuery{Limit: 10}
	if v := q.Get("events"); v != "" {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if !slices.Contains(schemas.EventTypes, t) {
				writeError(w, http.StatusBadRequest, "invalid_event_type", "unknown event type "+strconv.Quote(t)+"; known: "+strings.Join(schemas.EventTypes, ", "))
				return
			}
			eq.Types = append(eq.Types, t)
		}
	}
	if v := q.Get("organization_id"); v != "" {
		if err := domain.ValidateOrganizationID(v); err != nil {
			s.fail(w, r, err)
			return
		}
		eq.OrganizationID = v
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			writeError(w, http.StatusBadRequest, "invalid_limit", "limit must be an integer from 1 to 100")
			return
		}
		eq.Limit = n
	}
	switch q.Get("order") {
	case "", "asc":
	case "desc":
		eq.Descending = true
	default:
		writeError(w, http.StatusBadRequest, "invalid_order", "order must be asc (oldest first, the default) or desc")
		return
	}
	if v := q.Get("after"); v != "" {
		seq, ok := parseEventCursor(v)
		if !ok {
			writeError(w, http.StatusBadRequest, "invalid_cursor", "after must be a cursor from list_metadata.after")
			return
		}
		eq.AfterSeq = seq
	}
	for _, p := range []struct {
		name string
		to   *time.Time
	}{{"range_start", &eq.RangeStart}, {"range_end", &eq.RangeEnd}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				writeError(w, http.StatusBadRequest, "invalid_range", p.name+" must be an RFC 3339 time")
				return
			}
			*p.to = t
		}
	}
	if !eq.RangeStart.IsZero() && !eq.RangeEnd.IsZero() && !eq.RangeStart.Before(eq.RangeEnd) {
		writeError(w, http.StatusBadRequest, "invalid_range", "range_start must be before range_end")
		return
	}
	events, err := s.cfg.Feed.Events(r.Context(), eq)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := schemas.EventList{Object: schemas.ObjectList, Data: events}
	if out.Data == nil {
		out.Data = []schemas.PublicEvent{}
	}
	// The cursor moves past what this page returned (in its order); an
	// empty page keeps the caller's, so a follower polls with the same
	// cursor until more come.
	switch {
	case len(events) > 0:
		c := eventCursor(events[len(events)-1].Context.LedgerSequence)
		out.ListMetadata.After = &c
	case eq.AfterSeq > 0:
		c := eventCursor(eq.AfterSeq)
		out.ListMetadata.After = &c
	}
	writeJSON(w, http.StatusOK, out)
}

// Cursors are opaque to callers: a version and a ledger sequence.
const cursorPrefix = "v1."

func eventCursor(seq uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + strconv.FormatUint(seq, 10)))
}

func parseEventCursor(c string) (uint64, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || !strings.HasPrefix(string(raw), cursorPrefix) {
		return 0, false
	}
	seq, err := strconv.ParseUint(string(raw[len(cursorPrefix):]), 10, 64)
	return seq, err == nil && seq > 0
}
