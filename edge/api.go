package edge

import (
	"github.com/ssekafka/ssekafka/edge/internal/hub"
	"github.com/ssekafka/ssekafka/edge/internal/keyread"
	"github.com/ssekafka/ssekafka/edge/internal/route"
)

// RouteConfig is one sse-kafka route, as in Zilla's binding.
type RouteConfig = route.Config

// FilterConfig matches a record by key and/or headers; values are templates.
type FilterConfig = route.FilterConfig

// Route is a compiled RouteConfig.
type Route = route.Route

// Context resolves template expressions such as "params.id" or
// "guarded['jwt'].identity" for one request.
type Context = route.Context

// CompileRoute validates and compiles a route. Every ${params.x} used must be
// captured by every path of the route; ${guarded['NAME']...} needs the route
// to be guarded by NAME.
func CompileRoute(rc RouteConfig) (*Route, error) { return route.Compile(rc) }

// Authorization is one guard as routes use it: the guard and where a
// request carries its token (Zilla: sse.authorization.NAME.credentials).
type Authorization = hub.Authorization

// KeyReadLimits bound per-key JSON reads (sse.keyReads).
type KeyReadLimits = keyread.Limits
