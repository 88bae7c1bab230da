package edge

import (
	"net/http"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
)

// refuse answers a stream that cannot be served now, through w, as a
// browser survives it (200, the reason as a comment, a spread retry; docs/architecture.md
// rule 9): edge/internal/accept's Refuse.
func (e *Edge) refuse(w http.ResponseWriter, why reason.Reason) { e.acc.Refuse(w, why) }
