package api

import (
	"context"
	"io"
	"net/http"
	"regexp"

	"github.com/keyledger/keyledger/domain"
)

// Proofs prove that an event is in a signed checkpoint (the sealer). The
// answer is the sealer's proof, written as it is.
type Proofs interface {
	Prove(ctx context.Context, eventID string) (any, error)
}

// Exporter writes the ledger and its checkpoints for offline verification.
type Exporter interface {
	Export(ctx context.Context, w io.Writer) error
}

func (s *Server) eventProof(w http.ResponseWriter, r *http.Request, _ domain.Actor) {
	if s.cfg.Proofs == nil {
		writeError(w, http.StatusNotFound, "route_not_found", "the ledger is not sealed here")
		return
	}
	id := r.PathValue("id")
	if !eventIDPattern.MatchString(id) {
		s.fail(w, r, domain.ErrNotFound)
		return
	}
	p, err := s.cfg.Proofs.Prove(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) exportLedger(w http.ResponseWriter, r *http.Request, _ domain.Actor) {
	if s.cfg.Exporter == nil {
		writeError(w, http.StatusNotFound, "route_not_found", "the ledger is not exported here")
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Disposition", `attachment; filename="keyledger-ledger.jsonl"`)
	// Errors after the first byte can only cut the stream short; the
	// verifier then reports what is missing.
	if err := s.cfg.Exporter.Export(r.Context(), w); err != nil {
		s.log.Warn("api: ledger export ended early", "err", err)
	}
}

var eventIDPattern = regexp.MustCompile(`^event_[0-9A-HJKMNP-TV-Z]{26}$`)
