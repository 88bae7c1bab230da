// Command ssekafka streams Kafka topics to SSE clients. Subcommands:
//
//	ssekafka dev       all-in-one: embedded Kafka (kfake), NATS, a cache node and an edge
//	ssekafka cache     a cache node
//	ssekafka edge      an edge node
//	ssekafka validate  check a config file (--print: the effective config)
//	ssekafka version   print the version
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

const usage = `usage: ssekafka [--log-format text|json] <command> [flags]

commands:
  dev       run everything in one process: embedded Kafka and NATS, a cache node, an edge
  cache     run a cache node
  edge      run an edge node
  validate  check a config file (--config F): exit 1 with the field and line of the first problem;
            --print writes the effective config: every default filled in, secrets redacted
  version   print the version and the module versions it was built with

Run "ssekafka <command> -h" for its flags.
`

func main() {
	args := os.Args[1:]
	if len(args) >= 2 && (args[0] == "--log-format" || args[0] == "-log-format") {
		logFormat, args = args[1], args[2:]
	}
	if logFormat != "text" && logFormat != "json" {
		fmt.Fprintf(os.Stderr, "ssekafka: --log-format %q: want text or json\n", logFormat)
		os.Exit(2)
	}
	if len(args) < 1 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch cmd, args := args[0], args[1:]; cmd {
	case "dev":
		err = runDev(args)
	case "cache":
		err = runCache(args)
	case "edge":
		err = runEdge(args)
	case "validate":
		err = runValidate(args, os.Stdout)
	case "version":
		printVersion(os.Stdout)
		return
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "ssekafka: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return // the flags were printed, as asked
	}
	if flagParseError(err) {
		os.Exit(2) // the flag package has said what is wrong, with the usage
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ssekafka:", err)
		os.Exit(1)
	}
}

// logFormat is --log-format: text (the default) or json.
var logFormat = "text"

// runValidate parses a config as the edge and the cache would; with
// --print it writes the effective config (printEffective) after a comment
// line saying it is valid.
func runValidate(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	path := fs.String("config", "", "YAML config file (required)")
	printCfg := fs.Bool("print", false, "print the effective config as YAML: every default filled in, secrets redacted")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("validate: --config is required")
	}
	cfg, err := loadConfig(*path, false)
	if err != nil {
		return err
	}
	ok := fmt.Sprintf("%s: ok (%d routes, %d bootstrap topics)", *path, len(cfg.routes), len(cfg.Kafka.Bootstrap))
	if !*printCfg {
		fmt.Fprintln(out, ok)
		return nil
	}
	fmt.Fprintf(out, "# %s; the effective config: defaults filled in, secrets redacted\n", ok)
	return printEffective(out, cfg)
}

// printVersion prints the module version (a tagged build) or the commit it
// was built from, and the Go version.
func printVersion(out io.Writer) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintln(out, "ssekafka (no build information)")
		return
	}
	version, commit, dirty := bi.Main.Version, "", ""
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = " (modified)"
			}
		}
	}
	fmt.Fprintf(out, "ssekafka %s", version)
	if commit != "" {
		fmt.Fprintf(out, " commit %s%s", commit, dirty)
	}
	fmt.Fprintf(out, " %s\n", bi.GoVersion)
	for _, d := range bi.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		fmt.Fprintf(out, "  %s %s\n", d.Path, d.Version)
	}
}
