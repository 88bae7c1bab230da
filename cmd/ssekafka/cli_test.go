package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// run runs the binary to its end: its exit code and its output.
func runBinary(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(binary(t), args...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// A newcomer's first commands: help is not an error, a mistyped flag is
// said once, version lists the modules it was built with.
func TestCLIHelpFlagsAndVersion(t *testing.T) {
	if code, out := runBinary(t, "dev", "--help"); code != 0 || !strings.Contains(out, "-config") {
		t.Errorf("dev --help: exit %d, output %q", code, out)
	}
	code, out := runBinary(t, "dev", "--kafak", "x")
	if n := strings.Count(out, "flag provided but not defined: -kafak"); code != 2 || n != 1 {
		t.Errorf("dev --kafak: exit %d, the error said %d times: %q", code, n, out)
	}
	if code, out := runBinary(t, "version"); code != 0 || !strings.Contains(out, "github.com/twmb/franz-go ") || !strings.Contains(out, "github.com/nats-io/nats.go ") {
		t.Errorf("version: exit %d, %q lists no module versions", code, out)
	}
}

// A typo in a field names the field's path and the nearest field there,
// not a Go struct type.
func TestConfigTypoSuggestsTheNearestField(t *testing.T) {
	_, err := parseConfig([]byte("routes:\n  - when: [{path: /x}]\n    with: {topik: x}\n"), true)
	want := "line 3: field topik not found (routes[0].with.topik: did you mean topic?)"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
	_, err = parseConfig([]byte("sse:\n  zzzzzz: 1\n"), true)
	if err == nil || strings.Contains(err.Error(), "struct") || !strings.Contains(err.Error(), "(sse.zzzzzz)") {
		t.Fatalf("no near field: %v", err)
	}
}

// validate refuses routes written empty: such a config serves nothing.
func TestValidateRefusesEmptyRoutes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("routes: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := runValidate([]string{"--config", path}, &out); err == nil || !strings.Contains(err.Error(), "line 1: routes: at least one route") {
		t.Fatalf("validate routes: []: %v %q", err, out.String())
	}
}
