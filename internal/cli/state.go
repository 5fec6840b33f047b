package cli

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/netops-dev/netops/internal/render"
)

func newStateCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Inspect the local state database (history, local locks and queues)",
		Long: `Inspect the local state database.

netops keeps its local state (run history, and later local locks and queues) in one
SQLite database, netops.db, in the state directory: --state-dir, NETOPS_STATE_DIR or
state_dir in the config, else /var/lib/netops as root and $XDG_STATE_HOME/netops
(~/.local/state/netops) otherwise. The directory is created with mode 0700 and the
database with mode 0600. Many netops processes may use it at once.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(newStateInfoCmd(a), newStateCheckCmd(a))
	return cmd
}

func newStateInfoCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Show where the state database is, its schema version and size",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := a.format()
			if err != nil {
				return err
			}
			st, err := a.store(cmd.Context())
			if err != nil {
				return err
			}
			info, err := st.Info(cmd.Context())
			if err != nil {
				return err
			}
			if f == render.JSON {
				return render.WriteJSON(a.ios.Out, info)
			}
			var r render.Record
			r.Set("path", info.Path)
			r.Set("schema_version", strconv.Itoa(info.SchemaVersion))
			r.Set("journal_mode", info.JournalMode)
			r.Set("size_bytes", strconv.FormatInt(info.SizeBytes, 10))
			r.Set("runs", strconv.FormatInt(info.Runs, 10))
			return r.WriteText(a.ios.Out, a.mode())
		},
	}
}

func newStateCheckCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Check the state database's integrity (exit 78 when it is corrupt)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := a.format()
			if err != nil {
				return err
			}
			st, err := a.store(cmd.Context())
			if err != nil {
				return err
			}
			if err := st.Check(cmd.Context()); err != nil {
				return err
			}
			if f == render.JSON {
				return render.WriteJSON(a.ios.Out, map[string]any{"path": st.Path(), "ok": true})
			}
			if a.opts.quiet {
				return nil
			}
			_, err = fmt.Fprintf(a.ios.Out, "%s: ok\n", st.Path())
			return err
		},
	}
}
