package accept

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CORS lets pages of other origins read the edge's streams and renew them.
type CORS struct {
	// Origins allowed, as a browser sends them ("https://app.example.com");
	// ["*"]: any origin.
	Origins []string
	// Credentials lets pages send cookies (EventSource withCredentials,
	// fetch credentials: include). Not with any origin.
	Credentials bool
	// MaxAge is how long a browser may keep a preflight's answer. Default 0: its own default.
	MaxAge time.Duration
}

// The headers a renewal, a stream or a JSON read may carry (preflight).
const corsAllowHeaders = "authorization, content-type, last-event-id, x-ssekafka-stream, if-none-match"

// Validate checks the origins (New calls it).
func (c *CORS) Validate() error {
	if c == nil {
		return nil
	}
	if len(c.Origins) == 0 {
		return fmt.Errorf("edge config: CORS.Origins: none (want origins or \"*\")")
	}
	for i, o := range c.Origins {
		if o == "*" {
			if len(c.Origins) > 1 {
				return fmt.Errorf("edge config: CORS.Origins[%d]: \"*\" stands alone", i)
			}
			if c.Credentials {
				return fmt.Errorf("edge config: CORS.Credentials: not with any origin (\"*\"): every site could read a user's streams with their cookies; list the origins")
			}
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || o != strings.ToLower(o) {
			return fmt.Errorf("edge config: CORS.Origins[%d]: %q is not an origin (scheme://host[:port], lower case)", i, o)
		}
	}
	if c.MaxAge < 0 {
		return fmt.Errorf("edge config: CORS.MaxAge: %v is negative", c.MaxAge)
	}
	return nil
}

// CORSHeaders adds the CORS answer for r's origin to h, if it is allowed.
func (s *Server) CORSHeaders(h http.Header, r *http.Request) {
	c := s.cfg.CORS
	origin := r.Header.Get("Origin")
	if c == nil || origin == "" {
		return
	}
	if len(c.Origins) == 1 && c.Origins[0] == "*" {
		h.Set("Access-Control-Allow-Origin", "*")
		return
	}
	h.Add("Vary", "Origin")
	if !slices.Contains(c.Origins, origin) {
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	if c.Credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}

// Preflight answers a CORS preflight: the methods and headers of a stream
// and its renewal, when the origin is allowed (CORSHeaders has set it).
func (s *Server) Preflight(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	if h.Get("Access-Control-Allow-Origin") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST")
		h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		if ma := s.cfg.CORS.MaxAge; ma > 0 {
			h.Set("Access-Control-Max-Age", strconv.Itoa(int(ma.Seconds())))
		}
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusNoContent)
}

// corsFields are the CORS fields a stream's response carries.
var corsFields = [...]string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Vary"}

// AppendCORSLines appends the CORS header lines of h to dst, for a
// response header written by hand (a hijacked stream).
func AppendCORSLines(dst []byte, h http.Header) []byte {
	for _, k := range corsFields {
		for _, v := range h[k] {
			dst = append(dst, k...)
			dst = append(dst, ": "...)
			dst = append(dst, v...)
			dst = append(dst, "\r\n"...)
		}
	}
	return dst
}
