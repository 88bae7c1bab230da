// Package guard verifies the JWTs that guard SSE routes, as Zilla's `jwt`
// guard does: issuer, audience, keys inline or from a JWKS URL, a roles
// claim, an identity claim, attributes, and a challenge time before expiry.
// Unlike Zilla's, a JWKS is refreshed in the background and on an unknown
// key id (rate-limited), and a refresh that fails keeps the keys it had.
//
// Signatures and claims are checked by golang-jwt/jwt; JWKs are parsed and
// fetched by MicahParks/jwkset. What is ours is the policy: which
// algorithms a key may verify (bound to its type, so an RSA public key can
// never serve as an HMAC secret), that a token must name its key (kid) and
// carry an expiry, and the answers (401 or 403 with a reason).
package guard

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// Options configure one JWT guard. Names follow Zilla's jwt guard options.
type Options struct {
	// Name is the guard's name in the configuration (for errors and logs).
	Name string
	// Issuer, when set, must equal the token's iss.
	Issuer string
	// Audience, when set, must be among the token's aud (a string or an array).
	Audience string
	// Keys are inline JWKs (JSON objects). Each needs a kid.
	Keys []json.RawMessage
	// KeysURL is a JWKS to fetch instead (Zilla: `keys: <URI>`). When
	// neither is set it is Issuer + "/.well-known/jwks.json".
	KeysURL string
	// Challenge is how long before a token's expiry its stream is
	// challenged to renew (0: never).
	Challenge time.Duration
	// Identity is the claim (a dot path) naming the stream's owner. Default "sub".
	Identity string
	// Roles is the claim (a dot path) holding the roles, an array of strings
	// or a space-separated string. Default "scope".
	Roles string
	// Attributes map a name to a claim (a dot path), for templates.
	Attributes map[string]string
	// Algorithms, when set, are the only ones accepted; each key accepts only
	// those of its own type in any case.
	Algorithms []string
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 0.
	Leeway time.Duration
	// Refresh is how often a JWKS URL is fetched again. Default 5m.
	Refresh time.Duration
	// UnknownKeyRefresh is the least time between fetches made because a
	// token named a key the set lacks. Default 30s.
	UnknownKeyRefresh time.Duration
	// MaxTokenBytes refuses longer tokens before parsing them. Default 8192.
	MaxTokenBytes int
	// HTTPClient fetches the JWKS. Default: one with a 10 s timeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Guard verifies tokens for one configured guard.
type Guard struct {
	opts    Options
	keys    jwkset.Storage
	remote  bool
	cancel  context.CancelFunc
	parser  *jwt.Parser
	allowed map[string]bool // Options.Algorithms, nil: all
}

// Session is what a verified token grants.
type Session struct {
	Guard      string
	Identity   string
	Roles      []string
	Attributes map[string]string
	Expires    time.Time
	KeyID      string
}

// Refusal is why a request is not authorized, with the status to answer.
type Refusal struct {
	Status int    // 400, 401 or 403
	Code   string // RFC 6750 error code: invalid_request, invalid_token, insufficient_scope
	Reason string // a short reason, for the answer, logs and metrics; never the token
	Err    error  // the cause, when there is one
}

func (r *Refusal) Error() string {
	if r.Err != nil {
		return r.Reason + ": " + r.Err.Error()
	}
	return r.Reason
}

func (r *Refusal) Unwrap() error { return r.Err }

// WWWAuthenticate is the header value that goes with a 401 or 403.
func (r *Refusal) WWWAuthenticate(realm string) string {
	v := `Bearer realm="` + strings.ReplaceAll(realm, `"`, "") + `"`
	if r.Code != "" {
		v += `, error="` + r.Code + `", error_description="` + strings.ReplaceAll(r.Reason, `"`, "'") + `"`
	}
	return v
}

func unauthorized(reason string, err error) *Refusal {
	return &Refusal{Status: http.StatusUnauthorized, Code: "invalid_token", Reason: reason, Err: err}
}

// New makes a guard. A JWKS URL is fetched before it returns: New fails
// when it cannot be read, so a guard never starts without keys.
func New(ctx context.Context, o Options) (*Guard, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	g := &Guard{opts: o}
	if len(o.Algorithms) > 0 {
		g.allowed = map[string]bool{}
		for _, a := range o.Algorithms {
			if jwt.GetSigningMethod(a) == nil || a == "none" {
				return nil, fmt.Errorf("guard %s: algorithms: %q is not a JWS algorithm", o.Name, a)
			}
			g.allowed[a] = true
		}
	}
	if len(o.Keys) > 0 {
		store := jwkset.NewMemoryStorage()
		for i, raw := range o.Keys {
			raw, err := base64urlFields(raw)
			if err != nil {
				return nil, fmt.Errorf("guard %s: keys[%d]: %w", o.Name, i, err)
			}
			jwk, err := jwkset.NewJWKFromRawJSON(raw, jwkset.JWKMarshalOptions{Private: true}, jwkset.JWKValidateOptions{})
			if err != nil {
				return nil, fmt.Errorf("guard %s: keys[%d]: %w", o.Name, i, err)
			}
			if err := checkKey(jwk); err != nil {
				return nil, fmt.Errorf("guard %s: keys[%d]: %w", o.Name, i, err)
			}
			if err := store.KeyWrite(ctx, jwk); err != nil {
				return nil, fmt.Errorf("guard %s: keys[%d]: %w", o.Name, i, err)
			}
		}
		g.keys = store
	} else {
		rctx, cancel := context.WithCancel(context.Background())
		log := o.Logger.With("guard", o.Name, "jwks", o.KeysURL)
		remote, err := jwkset.NewStorageFromHTTP(o.KeysURL, jwkset.HTTPClientStorageOptions{
			Client:          o.HTTPClient,
			Ctx:             rctx,
			HTTPTimeout:     10 * time.Second,
			RefreshInterval: o.Refresh,
			RefreshErrorHandler: func(_ context.Context, err error) {
				log.Warn("jwks refresh failed; keeping the keys already read", "err", err)
			},
		})
		if err != nil {
			cancel()
			return nil, fmt.Errorf("guard %s: keys: read %s: %w", o.Name, o.KeysURL, err)
		}
		client, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
			HTTPURLs:          map[string]jwkset.Storage{o.KeysURL: remote},
			RefreshUnknownKID: rate.NewLimiter(rate.Every(o.UnknownKeyRefresh), 1),
		})
		if err != nil {
			cancel()
			return nil, fmt.Errorf("guard %s: keys: %w", o.Name, err)
		}
		g.keys, g.remote, g.cancel = client, true, cancel
	}
	popts := []jwt.ParserOption{jwt.WithExpirationRequired(), jwt.WithLeeway(o.Leeway), jwt.WithIssuedAt()}
	if o.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(o.Issuer))
	}
	if o.Audience != "" {
		popts = append(popts, jwt.WithAudience(o.Audience))
	}
	g.parser = jwt.NewParser(popts...)
	return g, nil
}

func (o *Options) setDefaults() error {
	if o.Name == "" {
		return errors.New("guard: no name")
	}
	if o.Identity == "" {
		o.Identity = "sub"
	}
	if o.Roles == "" {
		o.Roles = "scope"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"challenge", &o.Challenge, 0},
		{"leeway", &o.Leeway, 0},
		{"refresh", &o.Refresh, 5 * time.Minute},
		{"unknownKeyRefresh", &o.UnknownKeyRefresh, 30 * time.Second},
	}
	for _, d := range durations {
		switch {
		case *d.v < 0:
			return fmt.Errorf("guard %s: %s: %v is negative", o.Name, d.name, *d.v)
		case *d.v == 0:
			*d.v = d.def
		}
	}
	switch {
	case o.MaxTokenBytes < 0:
		return fmt.Errorf("guard %s: maxTokenBytes: %d is negative", o.Name, o.MaxTokenBytes)
	case o.MaxTokenBytes == 0:
		o.MaxTokenBytes = 8192
	}
	if len(o.Keys) > 0 && o.KeysURL != "" {
		return fmt.Errorf("guard %s: keys: inline keys and a URL", o.Name)
	}
	if len(o.Keys) == 0 {
		if o.KeysURL == "" {
			if o.Issuer == "" {
				return fmt.Errorf("guard %s: keys: none, and no issuer to find them at", o.Name)
			}
			o.KeysURL = strings.TrimSuffix(o.Issuer, "/") + "/.well-known/jwks.json"
		}
		u, err := url.Parse(o.KeysURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("guard %s: keys: %q is not an http(s) URL", o.Name, o.KeysURL)
		}
	}
	for _, path := range append([]string{o.Identity, o.Roles}, valuesOf(o.Attributes)...) {
		if path == "" || strings.HasPrefix(path, ".") || strings.HasSuffix(path, ".") || strings.Contains(path, "..") {
			return fmt.Errorf("guard %s: claim %q is not a claim path", o.Name, path)
		}
	}
	return nil
}

// base64urlFields rewrites a JWK's key material from standard base64 to
// base64url without padding, as RFC 7517 wants: Zilla's examples write `n`
// in standard base64 (with + / and =) and Zilla reads it, so a pasted
// configuration must work here too.
func base64urlFields(raw json.RawMessage) (json.RawMessage, error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	for _, f := range []string{"n", "e", "x", "y", "k", "d", "p", "q", "dp", "dq", "qi"} {
		if v, ok := m[f].(string); ok {
			m[f] = strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(v), "=")
		}
	}
	return json.Marshal(m)
}

func valuesOf(m map[string]string) []string {
	var vs []string
	for _, v := range m {
		vs = append(vs, v)
	}
	return vs
}

// checkKey refuses inline keys this guard could not use safely.
func checkKey(jwk jwkset.JWK) error {
	m := jwk.Marshal()
	if m.KID == "" {
		return errors.New("no kid: tokens name their key by kid")
	}
	if m.KTY == jwkset.KtyOct {
		secret, _ := jwk.Key().([]byte)
		need := 32
		switch m.ALG {
		case jwkset.AlgHS384:
			need = 48
		case jwkset.AlgHS512:
			need = 64
		}
		if len(secret) < need {
			return fmt.Errorf("kid %q: an HMAC key of %d bytes is too short (at least %d)", m.KID, len(secret), need)
		}
	}
	if len(algorithmsFor(jwk)) == 0 {
		return fmt.Errorf("kid %q: no JWS algorithm fits a %s key", m.KID, m.KTY)
	}
	return nil
}

// algorithmsFor lists the algorithms a key may verify: the one its alg
// names, or those of its type.
func algorithmsFor(jwk jwkset.JWK) []string {
	m := jwk.Marshal()
	var byType []string
	switch k := jwk.Key().(type) {
	case *rsa.PublicKey, *rsa.PrivateKey:
		byType = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case *ecdsa.PublicKey, *ecdsa.PrivateKey:
		switch m.CRV {
		case jwkset.CrvP256:
			byType = []string{"ES256"}
		case jwkset.CrvP384:
			byType = []string{"ES384"}
		case jwkset.CrvP521:
			byType = []string{"ES512"}
		}
	case ed25519.PublicKey, ed25519.PrivateKey:
		byType = []string{"EdDSA"}
	case []byte:
		for _, a := range []struct {
			name string
			size int
		}{{"HS256", 32}, {"HS384", 48}, {"HS512", 64}} {
			if len(k) >= a.size {
				byType = append(byType, a.name)
			}
		}
	}
	if a := m.ALG.String(); a != "" {
		if slices.Contains(byType, a) {
			return []string{a}
		}
		return nil
	}
	return byType
}

// Close stops the guard's JWKS refreshes.
func (g *Guard) Close() {
	if g.cancel != nil {
		g.cancel()
	}
}

// Name is the guard's configured name.
func (g *Guard) Name() string { return g.opts.Name }

// Challenge is how long before expiry a stream is challenged (0: never).
func (g *Guard) Challenge() time.Duration { return g.opts.Challenge }

// Refresh is how often the guard's JWKS is read again (0 for inline keys).
func (g *Guard) Refresh() time.Duration {
	if !g.remote {
		return 0
	}
	return g.opts.Refresh
}

// Verify checks token and that it grants every one of roles.
func (g *Guard) Verify(ctx context.Context, token string, roles []string) (*Session, error) {
	if len(token) > g.opts.MaxTokenBytes {
		return nil, &Refusal{Status: http.StatusUnauthorized, Code: "invalid_token", Reason: "token too long"}
	}
	var kid string
	claims := jwt.MapClaims{}
	_, err := g.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		alg, _ := t.Header["alg"].(string)
		kid, _ = t.Header["kid"].(string)
		if kid == "" {
			return nil, errNoKeyID
		}
		if g.allowed != nil && !g.allowed[alg] {
			return nil, fmt.Errorf("%w: %q is not among the guard's", errAlgorithm, alg)
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		jwk, err := g.keys.KeyRead(rctx, kid)
		if err != nil {
			return nil, errUnknownKey
		}
		if !slices.Contains(algorithmsFor(jwk), alg) {
			return nil, fmt.Errorf("%w: %q does not fit key %q", errAlgorithm, alg, kid)
		}
		switch k := jwk.Key().(type) {
		case *rsa.PrivateKey:
			return &k.PublicKey, nil
		case *ecdsa.PrivateKey:
			return &k.PublicKey, nil
		case ed25519.PrivateKey:
			return k.Public(), nil
		default:
			return k, nil
		}
	})
	if err != nil {
		return nil, refusalFor(err)
	}
	s := &Session{Guard: g.opts.Name, KeyID: kid}
	exp, _ := claims.GetExpirationTime()
	s.Expires = exp.Time
	if s.Identity, _ = claimString(claims, g.opts.Identity); s.Identity == "" {
		return nil, unauthorized("no identity claim "+g.opts.Identity, nil)
	}
	s.Roles = claimRoles(claims, g.opts.Roles)
	for _, r := range roles {
		if !slices.Contains(s.Roles, r) {
			return nil, &Refusal{Status: http.StatusForbidden, Code: "insufficient_scope", Reason: "role " + r + " missing"}
		}
	}
	if len(g.opts.Attributes) > 0 {
		s.Attributes = make(map[string]string, len(g.opts.Attributes))
		for name, path := range g.opts.Attributes {
			if v, ok := claimString(claims, path); ok {
				s.Attributes[name] = v
			}
		}
	}
	return s, nil
}

// KeyPresent says whether the key that signed a session is still in the
// guard's key set (a key removed from a JWKS ends its streams).
func (g *Guard) KeyPresent(ctx context.Context, kid string) bool {
	m, err := g.keys.KeyReadAll(ctx)
	if err != nil {
		return true // no answer is not an answer: keep the stream
	}
	return slices.ContainsFunc(m, func(j jwkset.JWK) bool { return j.Marshal().KID == kid })
}

var (
	errUnknownKey = errors.New("unknown key id")
	errNoKeyID    = errors.New("no kid in the token's header")
	errAlgorithm  = errors.New("algorithm not allowed")
)

// refusalFor names what was wrong with a token, without the token.
func refusalFor(err error) *Refusal {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return unauthorized("malformed token", err)
	case errors.Is(err, errUnknownKey):
		return unauthorized("unknown key", err)
	case errors.Is(err, errNoKeyID):
		return unauthorized("no key id", err)
	case errors.Is(err, errAlgorithm):
		return unauthorized("algorithm not allowed", err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return unauthorized("bad signature", err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return unauthorized("expired", err)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return unauthorized("not valid yet", err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return unauthorized("wrong issuer", err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return unauthorized("wrong audience", err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return unauthorized("no expiry", err)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return unauthorized("unverifiable", err)
	default:
		return unauthorized("invalid token", err)
	}
}

// claim follows a dot path into the claims.
func claim(c jwt.MapClaims, path string) (any, bool) {
	var v any = map[string]any(c)
	for _, part := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[part]; !ok {
			return nil, false
		}
	}
	return v, true
}

func claimString(c jwt.MapClaims, path string) (string, bool) {
	v, ok := claim(c, path)
	if !ok {
		return "", false
	}
	switch x := v.(type) {
	case string:
		return x, true
	case float64, bool:
		return fmt.Sprint(x), true
	case json.Number:
		return x.String(), true
	}
	return "", false
}

// claimRoles reads roles as an array of strings or a space-separated string.
func claimRoles(c jwt.MapClaims, path string) []string {
	v, ok := claim(c, path)
	if !ok {
		return nil
	}
	switch x := v.(type) {
	case string:
		return strings.Fields(x)
	case []any:
		var roles []string
		for _, r := range x {
			if s, ok := r.(string); ok {
				roles = append(roles, s)
			}
		}
		return roles
	}
	return nil
}
