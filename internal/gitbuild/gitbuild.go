// Package gitbuild builds the ssekafka binary from this checkout or from a
// commit of its git history, for the tests and benchmarks that run another
// version beside this tree (a baseline, a previous release). Imported by
// tests only.
package gitbuild

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Has returns nil when ref names a commit in root's git history, else why
// not (not a git checkout, a shallow clone without it, no git).
func Has(root, ref string) error {
	out, err := exec.Command("git", "-C", root, "cat-file", "-e", ref+"^{commit}").CombinedOutput()
	if err != nil {
		return fmt.Errorf("commit %s is not in the git history of %s: %w %s", ref, root, err, bytes.TrimSpace(out))
	}
	return nil
}

// Build builds root's ./cmd/ssekafka into dir and returns the binary's
// path: from the working tree when ref is empty, else from commit ref
// (extracted with git archive into dir, so the checkout's worktrees are
// left alone).
func Build(root, dir, ref string) (string, error) {
	name, src := "ssekafka", root
	if ref != "" {
		name = "ssekafka-" + strings.NewReplacer("/", "_", "~", "_", "^", "_").Replace(ref)
		src = filepath.Join(dir, "src-"+name)
		tarball := src + ".tar"
		if err := os.MkdirAll(src, 0o755); err != nil {
			return "", err
		}
		if err := command(root, "git", "archive", "-o", tarball, ref); err != nil {
			return "", err
		}
		if err := command(src, "tar", "-xf", tarball); err != nil {
			return "", err
		}
	}
	bin := filepath.Join(dir, name)
	if err := command(src, "go", "build", "-o", bin, "./cmd/ssekafka"); err != nil {
		return "", err
	}
	return bin, nil
}

func command(dir, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}
