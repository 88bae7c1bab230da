// Command ssekafka streams Kafka topics to SSE clients. Subcommands:
//
//	ssekafka dev    all-in-one: embedded Kafka (kfake), NATS, a cache node and an edge
//	ssekafka cache  a cache node
//	ssekafka edge   an edge node
package main

import (
	"fmt"
	"os"
)

const usage = `usage: ssekafka <command> [flags]

commands:
  dev     run everything in one process: embedded Kafka and NATS, a cache node, an edge
  cache   run a cache node
  edge    run an edge node

Run "ssekafka <command> -h" for its flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "dev":
		err = runDev(args)
	case "cache":
		err = runCache(args)
	case "edge":
		err = runEdge(args)
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "ssekafka: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ssekafka:", err)
		os.Exit(1)
	}
}
