package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.yaml.in/yaml/v3"

	"github.com/ssekafka/ssekafka/internal/tlsfiles"
)

// secret is a password or token, given as {file: PATH} or {env: NAME}: never
// inline in the config file, and never written to a log.
type secret struct {
	File string `yaml:"file"`
	Env  string `yaml:"env"`
}

func (s *secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return fmt.Errorf("line %d: a secret is written {file: PATH} or {env: NAME}, not inline", n.Line)
	}
	type plainSecret secret
	var p plainSecret
	if err := n.Decode(&p); err != nil {
		return err
	}
	if (p.File == "") == (p.Env == "") {
		return fmt.Errorf("line %d: a secret is {file: PATH} or {env: NAME}: give one", n.Line)
	}
	*s = secret(p)
	return nil
}

func (s *secret) set() bool { return s != nil && (s.File != "" || s.Env != "") }

// String never shows the value.
func (s secret) String() string {
	if s.File != "" {
		return "secret in file " + s.File
	}
	return "secret in $" + s.Env
}

// value reads the secret: a file's content without its final newline, or
// the environment variable, which must be set and not empty.
func (s *secret) value() (string, error) {
	if s.File != "" {
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", err
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", fmt.Errorf("file %s is empty", s.File)
		}
		return v, nil
	}
	v := os.Getenv(s.Env)
	if v == "" {
		return "", fmt.Errorf("$%s is not set", s.Env)
	}
	return v, nil
}

// tlsConfig is a client's TLS to Kafka or NATS. Present (even empty) means
// TLS on, trusting the system's CAs unless ca is given.
type tlsConfig struct {
	CA         string `yaml:"ca"`
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
	ServerName string `yaml:"serverName"`
}

func (t *tlsConfig) files() tlsfiles.Client {
	return tlsfiles.Client{CA: t.CA, Cert: t.Cert, Key: t.Key, ServerName: t.ServerName}
}

// natsCredentials: at most one of password (with user), token, nkey seed
// file or .creds file.
type natsCredentials struct {
	User      string  `yaml:"user"`
	Password  *secret `yaml:"password"`
	Token     *secret `yaml:"token"`
	NKeySeed  string  `yaml:"nkeySeedFile"`
	CredsFile string  `yaml:"credsFile"`
	// OwnIdentity (edges): the credsFile's user is this edge's own, named
	// in its JWT (docs/security.md: a NATS identity per edge).
	OwnIdentity bool `yaml:"ownIdentity"`
}

type kafkaSASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER.
	Mechanism string  `yaml:"mechanism"`
	User      string  `yaml:"user"`
	Password  *secret `yaml:"password"`
	Token     *secret `yaml:"token"` // OAUTHBEARER
}

// validateSecurity checks the shape of the nats and kafka security
// settings (the files and secrets are read at start).
func (cfg *config) validateSecurity(at func(string) string) error {
	c := cfg.NATS.Credentials
	n := 0
	for _, set := range []bool{c.Password.set(), c.Token.set(), c.NKeySeed != "", c.CredsFile != ""} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		return fmt.Errorf("%s: give one of password, token, nkeySeedFile, credsFile", at("nats.credentials"))
	case c.Password.set() != (c.User != ""):
		return fmt.Errorf("%s: user and password go together", at("nats.credentials"))
	case c.OwnIdentity && c.CredsFile == "":
		return fmt.Errorf("%s: an own identity is the user of a credsFile", at("nats.credentials.ownIdentity"))
	}
	if u, err := url.Parse(cfg.NATS.URL); err == nil && u.User != nil {
		if _, has := u.User.Password(); has && n > 0 {
			return fmt.Errorf("%s: credentials in the URL and in nats.credentials", at("nats.url"))
		}
	}
	for _, t := range []struct {
		field string
		tls   *tlsConfig
	}{{"nats.tls", cfg.NATS.TLS}, {"kafka.tls", cfg.Kafka.TLS}} {
		if t.tls != nil && (t.tls.Cert == "") != (t.tls.Key == "") {
			return fmt.Errorf("%s: cert and key: give both or neither", at(t.field))
		}
	}
	if t := cfg.SSE.TLS; t != nil && (t.Cert == "" || t.Key == "") {
		return fmt.Errorf("%s: cert and key: give both, or leave sse.tls out", at("sse.tls"))
	}
	if s := cfg.Kafka.SASL; s != nil {
		switch s.Mechanism {
		case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
			if s.User == "" || !s.Password.set() {
				return fmt.Errorf("%s: %s needs user and password", at("kafka.sasl"), s.Mechanism)
			}
		case "OAUTHBEARER":
			if !s.Token.set() {
				return fmt.Errorf("%s: OAUTHBEARER needs token", at("kafka.sasl"))
			}
		default:
			return fmt.Errorf("%s: %q is not PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER", at("kafka.sasl.mechanism"), s.Mechanism)
		}
	}
	return nil
}

// natsOptions are the connection options nats.tls and nats.credentials say.
func (n *natsConfig) options() ([]nats.Option, error) {
	var opts []nats.Option
	if n.TLS != nil {
		tc, err := n.TLS.files().Config()
		if err != nil {
			return nil, fmt.Errorf("nats.tls: %w", err)
		}
		opts = append(opts, nats.Secure(tc))
	}
	c := n.Credentials
	switch {
	case c.Password.set():
		pw, err := c.Password.value()
		if err != nil {
			return nil, fmt.Errorf("nats.credentials.password: %w", err)
		}
		opts = append(opts, nats.UserInfo(c.User, pw))
	case c.Token.set():
		tok, err := c.Token.value()
		if err != nil {
			return nil, fmt.Errorf("nats.credentials.token: %w", err)
		}
		opts = append(opts, nats.Token(tok))
	case c.NKeySeed != "":
		o, err := nats.NkeyOptionFromSeed(c.NKeySeed)
		if err != nil {
			return nil, fmt.Errorf("nats.credentials.nkeySeedFile: %w", err)
		}
		opts = append(opts, o)
	case c.CredsFile != "":
		if _, err := os.Stat(c.CredsFile); err != nil {
			return nil, fmt.Errorf("nats.credentials.credsFile: %w", err)
		}
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	return opts, nil
}

// options are the franz-go options kafka.tls and kafka.sasl say.
func (k *kafkaConfig) options() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if k.TLS != nil {
		tc, err := k.TLS.files().Config()
		if err != nil {
			return nil, fmt.Errorf("kafka.tls: %w", err)
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if s := k.SASL; s != nil {
		if s.Mechanism == "OAUTHBEARER" {
			tok, err := s.Token.value()
			if err != nil {
				return nil, fmt.Errorf("kafka.sasl.token: %w", err)
			}
			return append(opts, kgo.SASL(oauth.Auth{Token: tok}.AsMechanism())), nil
		}
		pw, err := s.Password.value()
		if err != nil {
			return nil, fmt.Errorf("kafka.sasl.password: %w", err)
		}
		switch s.Mechanism {
		case "PLAIN":
			opts = append(opts, kgo.SASL(plain.Auth{User: s.User, Pass: pw}.AsMechanism()))
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(scram.Auth{User: s.User, Pass: pw}.AsSha256Mechanism()))
		case "SCRAM-SHA-512":
			opts = append(opts, kgo.SASL(scram.Auth{User: s.User, Pass: pw}.AsSha512Mechanism()))
		default:
			return nil, errors.New("kafka.sasl.mechanism: unknown") // validateSecurity refused it already
		}
	}
	return opts, nil
}

// redactURL is a URL fit for a log: user, password or token in it replaced.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	return u.String()
}

// edgeTLS is the edge listener's TLS that sse.tls says, nil for none.
func (s *sseConfig) edgeTLS(log *slog.Logger) (*tls.Config, error) {
	t := s.TLS
	if t == nil {
		return nil, nil
	}
	for _, f := range []struct{ field, path string }{{"sse.tls.cert", t.Cert}, {"sse.tls.key", t.Key}} {
		fh, err := os.Open(f.path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.field, err)
		}
		_ = fh.Close()
	}
	r, err := tlsfiles.NewReloader(t.Cert, t.Key, log)
	if err != nil {
		return nil, fmt.Errorf("sse.tls: %w", err)
	}
	return r.ServerConfig(), nil
}

// natsIdentity is an edge's own NATS user name (its creds file's JWT
// names it, nats.credentials.ownIdentity), with the connection option that
// puts its inboxes under _INBOX.<name>., the only ones its user may
// subscribe to; "" and none without an own identity.
func (n *natsConfig) natsIdentity() (string, []nats.Option, error) {
	c := n.Credentials
	if !c.OwnIdentity {
		return "", nil, nil
	}
	b, err := os.ReadFile(c.CredsFile)
	if err != nil {
		return "", nil, fmt.Errorf("nats.credentials.credsFile: %w", err)
	}
	tok, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return "", nil, fmt.Errorf("nats.credentials.credsFile: %w", err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return "", nil, fmt.Errorf("nats.credentials.credsFile: user JWT: %w", err)
	}
	if uc.Name == "" || strings.ContainsAny(uc.Name, ".*> \t\r\n") {
		return "", nil, fmt.Errorf("nats.credentials.ownIdentity: the user JWT's name %q is not one NATS subject token", uc.Name)
	}
	return uc.Name, []nats.Option{nats.CustomInboxPrefix("_INBOX." + uc.Name)}, nil
}
