// Command netops: network operations from a shell. See internal/cli.
package main

import (
	"os"

	"github.com/netops-dev/netops/internal/cli"
)

// Set with -ldflags "-X main.version=... -X main.commit=... -X main.date=...".
var (
	version string
	commit  string
	date    string
)

func main() {
	os.Exit(cli.Main(cli.Build{Version: version, Commit: commit, Date: date}))
}
