package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "netops",
		Short: "Network operations from a shell: diagnose, transfer, lock, pass messages",
		Long: `netops is one binary for network operations from a shell, cron jobs and CI:

  diag       check hosts, networks and services; health score and exit code
  transfer   move files over SFTP, HTTP and local paths, verified, with retry and resume
  lock       exclusive and shared locks for jobs, on one host or across a fleet
  ipc        queues, channels and TCP sockets for messages between processes and hosts
  server     run an embedded NATS JetStream server for multi-host locks and messages

Targets, rules and transfer profiles come from one YAML file (--config, else
./netops.yaml, ~/.config/netops/netops.yaml, /etc/netops/netops.yaml). Scalar settings
can be overridden with NETOPS_* environment variables (NETOPS_STATE_DIR,
NETOPS_BACKEND_KIND, NETOPS_BACKEND_URL, NETOPS_SSH_HOST_KEY_POLICY, ...) and flags.

Results go to stdout: aligned text on a terminal, tab-separated lines when piped,
JSON with --output json. Logs and progress go to stderr.

` + exitCodeHelp(),
		Version:       "", // set below; `netops --version` and `netops version` agree
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			a.setup()
		},
		// Root without a subcommand shows help.
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf(fmt.Errorf("unknown command %q", args[0]))
			}
			return cmd.Help()
		},
		Args: cobra.ArbitraryArgs,
	}
	root.Version = versionLine(a.build)
	root.SetVersionTemplate("{{.Version}}\n")
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageErrorf(err)
	})

	pf := root.PersistentFlags()
	pf.StringVar(&a.opts.configPath, "config", "", "config file (default: first of ./netops.yaml, ~/.config/netops/netops.yaml, /etc/netops/netops.yaml)")
	pf.StringVarP(&a.opts.output, "output", "o", "text", "output format: text or json (diag also: junit, tap, nagios, prometheus)")
	pf.BoolVarP(&a.opts.quiet, "quiet", "q", false, "print only errors and requested data; status results (diag text, validate) only through the exit code")
	pf.BoolVarP(&a.opts.verbose, "verbose", "v", false, "log what netops does (debug level) to stderr")
	pf.BoolVar(&a.opts.noColor, "no-color", false, "never color output (also: NO_COLOR=1)")
	pf.String("state-dir", "", "state directory (default: /var/lib/netops as root, else $XDG_STATE_HOME/netops)")
	pf.String("backend", "", "lock/ipc backend: local or nats (overrides backend.kind)")
	pf.String("backend-url", "", "NATS server URLs, comma-separated (overrides backend.url)")
	bindFlags(a, pf)
	a.root = root

	if v := a.getenv("NETOPS_CONFIG"); v != "" {
		a.opts.configPath = v
	}
	if v := a.getenv("NETOPS_OUTPUT"); v != "" {
		a.opts.output = v
	}

	root.AddGroup(
		&cobra.Group{ID: "ops", Title: "Operations:"},
		&cobra.Group{ID: "setup", Title: "Configuration and state:"},
	)
	for _, c := range []*cobra.Command{
		newDiagCmd(a),
		newTransferCmd(a),
		newLockCmd(a),
		newIPCCmd(a),
		newServerCmd(a),
	} {
		c.GroupID = "ops"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{newConfigCmd(a), newStateCmd(a)} {
		c.GroupID = "setup"
		root.AddCommand(c)
	}
	root.AddCommand(newVersionCmd(a), newCompletionCmd(a))
	return root
}

// bindFlags ties the override flags to config keys through viper.
func bindFlags(a *app, pf *pflag.FlagSet) {
	for key, name := range flagKeys() {
		_ = a.v.BindPFlag(key, pf.Lookup(name)) // flags are defined just above
	}
}

// exitCodeHelp renders the exit code table for --help.
func exitCodeHelp() string {
	var b strings.Builder
	b.WriteString("Exit codes:\n")
	for _, e := range exitCodes() {
		fmt.Fprintf(&b, "  %3d  %s\n", e.Code, e.Meaning)
	}
	return strings.TrimRight(b.String(), "\n")
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErrorf(fmt.Errorf("%s takes %s, got %d argument(s)", cmd.CommandPath(), names, len(args)))
		}
		return nil
	}
}

// maxArgs is cobra.MaximumNArgs with a usage error.
func maxArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usageErrorf(fmt.Errorf("%s takes at most %s, got %d arguments", cmd.CommandPath(), names, len(args)))
		}
		return nil
	}
}

// noArgs rejects positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf(fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), args[0]))
	}
	return nil
}

// groupRunE makes a command that only groups subcommands reject an unknown
// subcommand as a usage error (cobra would print the help and exit 0).
func groupRunE(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if cmd.SuggestionsMinimumDistance <= 0 {
			cmd.SuggestionsMinimumDistance = 2
		}
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf("; did you mean %q?", s[0])
		}
		return usageErrorf(errors.New(msg))
	}
	return cmd.Help()
}
