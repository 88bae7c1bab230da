package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// With sse.adminToken set, a POST to the admin listener must carry the
// bearer token; reads stay open to scrapers; the token is never logged.
func TestAdminTokenGuardsPOSTs(t *testing.T) {
	const token = "admin-secret-5"
	logs := &syncWriter{w: &strings.Builder{}}
	reg := prometheus.NewRegistry()
	served := 0
	h := adminGuard(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { served++ }), token, newAdminRefusals(reg), slog.New(slog.NewTextHandler(logs, nil)))
	for _, tc := range []struct {
		name, method, auth string
		want               int
	}{
		{"read without token", http.MethodGet, "", 200},
		{"POST without token", http.MethodPost, "", 401},
		{"POST with a wrong token", http.MethodPost, "Bearer " + token + "x", 401},
		{"POST with the token", http.MethodPost, "Bearer " + token, 200},
	} {
		r := httptest.NewRequest(tc.method, "http://127.0.0.1:9465/_ssekafka/drain", nil)
		r.Header.Set(adminHeader, "1")
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Fatalf("%s: %d %q, want %d", tc.name, w.Code, w.Body, tc.want)
		}
	}
	if served != 2 {
		t.Fatalf("served %d, want 2", served)
	}
	if n := testutil.ToFloat64(mustCounter(t, reg, "unauthorized")); n != 2 {
		t.Fatalf("unauthorized refusals counted %v, want 2", n)
	}
	if strings.Contains(logs.String(), token) || !strings.Contains(logs.String(), "admin request refused") {
		t.Fatalf("logs: %s", logs)
	}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, reason string) prometheus.Collector {
	t.Helper()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ssekafka_edge_admin_refusals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == reason {
				c.Add(m.GetCounter().GetValue())
			}
		}
	}
	return c
}
