package edge

import (
	"fmt"
	"strings"

	"github.com/ssekafka/ssekafka/edge/internal/compress"
)

// defaultCompression is Config.Compression's default: zstd where the
// client accepts it, else gzip, else identity.
var defaultCompression = []string{"zstd", "gzip"}

// parseCodings turns a Compression list into the codings the hub offers:
// nil for nil (the default, or the edge's for a route). An unknown or
// repeated name, or an empty list, is an error.
func parseCodings(names []string) ([]compress.Encoding, error) {
	if names == nil {
		return nil, nil
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("must name at least one coding (identity: off)")
	}
	out := make([]compress.Encoding, 0, len(names))
	for _, n := range names {
		var e compress.Encoding
		switch strings.ToLower(strings.TrimSpace(n)) {
		case "identity":
			e = compress.Identity
		case "gzip":
			e = compress.Gzip
		case "zstd":
			e = compress.Zstd
		default:
			return nil, fmt.Errorf("unknown coding %q: identity, gzip or zstd", n)
		}
		for _, seen := range out {
			if seen == e {
				return nil, fmt.Errorf("coding %q named twice", n)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// checkCompression is Compression's row of validation.
func (c *Config) checkCompression() error {
	if _, err := parseCodings(c.Compression); err != nil {
		return &ConfigError{Component: "edge", Field: "Compression",
			Rule:  "must list identity, gzip or zstd, each once (identity alone: off)",
			Value: "[" + strings.Join(c.Compression, ", ") + "]"}
	}
	return nil
}

// hubCompression is c.Compression (its default filled in) as the hub takes it.
func (c *Config) hubCompression() []compress.Encoding {
	names := c.Compression
	if names == nil {
		names = defaultCompression
	}
	codings, err := parseCodings(names)
	if err != nil { // validated
		return []compress.Encoding{compress.Identity}
	}
	return codings
}
