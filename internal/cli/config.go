package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/fsutil"
	"github.com/netops-dev/netops/internal/render"
)

func newConfigCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Validate, show and export the configuration",
		Long: `Validate, show and export the netops configuration.

The config file is --config (or NETOPS_CONFIG), else the first that exists of
./netops.yaml, ~/.config/netops/netops.yaml and /etc/netops/netops.yaml.
Unknown keys, wrong types and bad values are errors that name the file, line and
key (exit 78).`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(newConfigValidateCmd(a), newConfigShowCmd(a), newConfigExportCmd(a))
	return cmd
}

type validateResult struct {
	File      string        `json:"file"`
	Valid     bool          `json:"valid"`
	Targets   int           `json:"targets"`
	Rules     int           `json:"rules"`
	Transfers int           `json:"transfers"`
	Queues    int           `json:"queues"`
	Channels  int           `json:"channels"`
	Issues    []issueReport `json:"issues,omitempty"`
}

type issueReport struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Key     string `json:"key,omitempty"`
	Message string `json:"message"`
}

func newConfigValidateCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "validate [FILE|-]",
		Short: "Check a config file; exit 0 when valid, 78 with file:line: key for each problem",
		Long: `Check a config file strictly: unknown keys, wrong types, duplicate names and
invalid addresses, CIDRs, URLs, durations and port ranges are reported with the
file, line and key. Exit 0 when valid, 78 otherwise.

Without FILE the config netops would use is checked, together with the NETOPS_*
environment and flag overrides. FILE "-" reads standard input, e.g.:

  netops config export | netops config validate -`,
		Args: maxArgs(1, "one FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := a.format()
			if err != nil {
				return err
			}
			var (
				cfg  *config.Config
				name string
			)
			switch {
			case len(args) == 1 && args[0] == "-":
				name = "<stdin>"
				data, rerr := io.ReadAll(a.ios.In)
				if rerr != nil {
					return fmt.Errorf("read config from stdin: %w", rerr)
				}
				cfg, err = config.Parse("-", data)
			case len(args) == 1:
				name = args[0]
				cfg, err = config.Load(name)
			default:
				name = a.configFile()
				if name == "" {
					return &config.Error{Err: errors.New("no config file found (looked for ./netops.yaml, ~/.config/netops/netops.yaml, /etc/netops/netops.yaml); pass one with --config or as an argument")}
				}
				cfg, err = a.config()
			}
			res := validateResult{File: name, Valid: err == nil}
			if err != nil {
				var ce *config.Error
				if f == render.JSON && errors.As(err, &ce) {
					for _, is := range ce.Issues {
						res.Issues = append(res.Issues, issueReport{File: is.File, Line: is.Line, Column: is.Column, Key: is.Key, Message: is.Msg})
					}
					if len(ce.Issues) == 0 {
						res.Issues = append(res.Issues, issueReport{Message: ce.Error()})
					}
					if werr := render.WriteJSON(a.ios.Out, res); werr != nil {
						return werr
					}
				}
				return err
			}
			res.Targets, res.Rules, res.Transfers = len(cfg.Targets), len(cfg.Rules), len(cfg.Transfers)
			res.Queues, res.Channels = len(cfg.IPC.Queues), len(cfg.IPC.Channels)
			if f == render.JSON {
				return render.WriteJSON(a.ios.Out, res)
			}
			if a.opts.quiet {
				return nil
			}
			_, err = fmt.Fprintf(a.ios.Out, "%s: valid (%d targets, %d rules, %d transfers, %d queues, %d channels)\n",
				name, res.Targets, res.Rules, res.Transfers, res.Queues, res.Channels)
			return err
		},
	}
}

func newConfigShowCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Print the effective config (file + defaults + overrides), secrets masked",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := a.format()
			if err != nil {
				return err
			}
			cfg, err := a.config()
			if err != nil {
				return err
			}
			eff := cfg.WithDefaults()
			if eff.StateDir == "" {
				if eff.StateDir, err = a.stateDir(); err != nil {
					return err
				}
			}
			eff = eff.Masked()
			if f == render.JSON {
				return render.WriteJSON(a.ios.Out, eff)
			}
			data, err := eff.Export()
			if err != nil {
				return err
			}
			src := a.configFile()
			if src == "" {
				src = "none (built-in defaults)"
			}
			if _, err := fmt.Fprintf(a.ios.Out, "# effective configuration; file: %s; secrets masked\n", src); err != nil {
				return err
			}
			_, err = a.ios.Out.Write(data)
			return err
		},
	}
}

func newConfigExportCmd(a *app) *cobra.Command {
	var outFile string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Print the config as YAML that loads back to the same config (secrets included)",
		Long: `Print the effective config (file, defaults, NETOPS_* and flag overrides) as YAML
that 'netops config validate -' and --config load back to the same configuration.
Secrets are included: use 'config show' to look at a config safely.
With --file the YAML is written atomically with mode 0600.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := a.format()
			if err != nil {
				return err
			}
			cfg, err := a.config()
			if err != nil {
				return err
			}
			eff := cfg.WithDefaults()
			var data []byte
			if f == render.JSON {
				var b bytes.Buffer
				if err := render.WriteJSON(&b, eff); err != nil {
					return err
				}
				data = b.Bytes()
			} else if data, err = eff.Export(); err != nil {
				return err
			}
			if outFile != "" {
				return fsutil.WriteFileAtomic(outFile, data, 0o600)
			}
			_, err = a.ios.Out.Write(data)
			return err
		},
	}
	cmd.Flags().StringVarP(&outFile, "file", "f", "", "write to this file (atomically, mode 0600) instead of stdout")
	return cmd
}
