// Command genman writes netops man pages (section 1) into a directory:
//
//	go run ./cmd/genman man/
//
// It lives outside the netops binary so cobra/doc and its markdown renderer are
// not linked into netops.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra/doc"

	"github.com/netops-dev/netops/internal/cli"
)

func main() {
	dir := "man"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "genman: %v\n", err)
		os.Exit(1)
	}
	root := cli.CommandTree()
	root.DisableAutoGenTag = true
	header := &doc.GenManHeader{Title: "NETOPS", Section: "1", Source: "netops", Manual: "netops manual"}
	if err := doc.GenManTree(root, header, dir); err != nil {
		fmt.Fprintf(os.Stderr, "genman: %v\n", err)
		os.Exit(1)
	}
}
