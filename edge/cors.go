package edge

import (
	"net/http"

	"github.com/ssekafka/ssekafka/edge/internal/accept"
	"github.com/ssekafka/ssekafka/edge/internal/route"
)

// CORS lets pages of other origins read the edge's streams and renew them.
type CORS = accept.CORS

// allowed is a route's Allow header: GET, POST for a guarded route's
// renewals, OPTIONS with CORS.
func allowed(r *route.Route, cors bool) string {
	a := http.MethodGet
	if r.Guard() != "" {
		a += ", " + http.MethodPost
	}
	if cors {
		a += ", " + http.MethodOptions
	}
	return a
}
