package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/diag"
	"github.com/netops-dev/netops/internal/render"
	"github.com/netops-dev/netops/internal/store"
)

type diagOptions struct {
	all         bool
	tags        []string
	rules       []string
	concurrency int
	maxTime     time.Duration
	noHistory   bool
	history     bool // serve only
	explain     bool
}

func newDiagCmd(a *app) *cobra.Command {
	var o diagOptions
	cmd := &cobra.Command{
		Use:   "diag [TARGET...]",
		Short: "Check hosts, networks and services and report their health",
		Long: `Check targets with real probes and report every check's status, a health score
and what to do about each failure.

A TARGET is a target name from the config, or an address typed ad hoc whose type
is inferred: an IP or hostname is a host, a CIDR a network, a URL (http, https,
tcp, tls, nats) or host:port a service. Without TARGET every configured target is
checked. Rules come from the config (a target's own 'rules' list, else every rule
that applies to its type); without rules in the config, built-in rules run (ping,
dns for names, tcp/http for services, a NATS/JetStream check for nats:// services,
a top-100 port listing for hosts, discovery for networks).

Score: the weighted share of passing checks (critical rules weigh 3, warning 2,
info 1; a WARNING earns half): EXCELLENT >= 90, GOOD >= 75, FAIR >= 60, else
CRITICAL. The exit code is the worst status: 0 OK, 1 WARNING, 2 CRITICAL,
3 UNKNOWN (a check could not run, e.g. no permission for ICMP).

Output: text, json, junit, tap, nagios (with perfdata), prometheus (text
exposition, for node_exporter's textfile collector). Every run is recorded in the
local history (netops diag history) unless --no-history.`,
		Example: `  netops diag                                 # every target in the config
  netops diag 127.0.0.1 https://127.0.0.1:8443/healthz 127.0.0.0/29
  netops diag web1 db1 --output junit > diag.xml
  netops diag --tag prod --output nagios
  netops diag --all --output prometheus > /var/lib/node_exporter/netops.prom`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := suggestSubcommand(a, cmd, args); err != nil {
				return err
			}
			return runDiag(cmd.Context(), a, args, o)
		},
	}
	o.addFlags(cmd.Flags(), "check", "overall time limit; checks still running then are UNKNOWN (0 = none)", false)
	cmd.Flags().BoolVar(&o.explain, "explain", false, "for each failing target, diagnose layer by layer: DNS, ICMP, TCP, TLS, HTTP, then traceroute when the path looks broken")
	cmd.AddCommand(newDiagMonitorCmd(a), newDiagServeCmd(a), newDiagHistoryCmd(a), newDiagReportCmd(a), newDiagPerfCmd(a), newDiagTraceCmd(a), newDiagDoctorCmd(a), newDiagBandwidthServerCmd(a))
	return cmd
}

// addFlags adds the target selection and run flags shared by diag, monitor and serve.
func (o *diagOptions) addFlags(f *pflag.FlagSet, verb, maxTimeHelp string, noHistory bool) {
	f.BoolVar(&o.all, "all", false, verb+" every configured target (the default without TARGET)")
	f.StringSliceVar(&o.tags, "tag", nil, verb+" the configured targets with this tag (repeatable)")
	f.StringSliceVar(&o.rules, "rule", nil, "run only these rules (repeatable)")
	f.IntVarP(&o.concurrency, "concurrency", "j", 256, "checks run at once (each bounds its own sockets)")
	f.DurationVar(&o.maxTime, "max-time", 0, maxTimeHelp)
	if noHistory {
		// serve answers every poll: recording each round is opt-in there.
		f.BoolVar(&o.history, "history", false, "record every round in the local history")
	} else {
		f.BoolVar(&o.noHistory, "no-history", false, "do not record runs in the local history")
	}
}

// plan validates the shared options and resolves targets and checks.
func (o *diagOptions) plan(a *app, args []string) ([]config.Target, []diag.Check, error) {
	if o.concurrency < 1 {
		return nil, nil, usageErrorf(errors.New("--concurrency must be at least 1"))
	}
	if o.maxTime < 0 {
		return nil, nil, usageErrorf(errors.New("--max-time must not be negative"))
	}
	cfg, err := a.config()
	if err != nil {
		return nil, nil, err
	}
	targets, err := diag.SelectTargets(cfg, diag.Selection{Args: args, Tags: o.tags, All: o.all})
	if err != nil {
		var te *diag.TargetError
		if errors.As(err, &te) {
			return nil, nil, usageErrorf(err)
		}
		return nil, nil, err
	}
	known := diag.RuleNames(cfg)
	for _, r := range o.rules {
		if !slices.Contains(known, r) {
			where := "the config's rules"
			if len(cfg.Rules) == 0 {
				where = "the built-in rules"
			}
			return nil, nil, usageErrorf(fmt.Errorf("unknown rule %q: not one of %s (%s)", r, where, strings.Join(known, ", ")))
		}
	}
	checks := diag.Plan(cfg, targets, o.rules)
	if len(checks) == 0 {
		return nil, nil, usageErrorf(errors.New("no rule applies to the selected targets: nothing to check (see applies_to, the targets' rules lists and --rule)"))
	}
	return targets, checks, nil
}

// suggestSubcommand catches a mistyped subcommand ("histroy") before it is
// taken for a hostname and looked up in DNS.
func suggestSubcommand(a *app, cmd *cobra.Command, args []string) error {
	if len(args) != 1 || strings.ContainsAny(args[0], ".:/[") {
		return nil
	}
	if cfg, err := a.config(); err == nil {
		if _, ok := cfg.Target(args[0]); ok {
			return nil
		}
	}
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		return usageErrorf(fmt.Errorf("unknown target %q: not a configured target; did you mean 'netops diag %s'? (to check a host of that name, write it with a trailing dot: %s.)", args[0], s[0], args[0]))
	}
	return nil
}

// oneTarget resolves the single TARGET argument of perf and trace.
func (a *app) oneTarget(arg string) (config.Target, error) {
	cfg, err := a.config()
	if err != nil {
		return config.Target{}, err
	}
	targets, err := diag.SelectTargets(cfg, diag.Selection{Args: []string{arg}})
	if err != nil {
		return config.Target{}, usageErrorf(err)
	}
	return targets[0], nil
}

func runDiag(ctx context.Context, a *app, args []string, o diagOptions) error {
	format, err := a.format(render.DiagFormats()...)
	if err != nil {
		return err
	}
	targets, checks, err := o.plan(a, args)
	if err != nil {
		return err
	}
	a.log.Debug("diag plan", "targets", len(targets), "checks", len(checks))
	rep := diag.Run(ctx, checks, diag.Options{Probes: diag.Probes(), Concurrency: o.concurrency, MaxTime: o.maxTime})
	rep.AddTargets(targets)
	if o.explain && ctx.Err() == nil {
		diag.ExplainFailures(ctx, rep, checks, diag.Probes())
	}
	if ctx.Err() != nil {
		return errInterrupted
	}
	if !o.noHistory {
		a.recordDiag(ctx, rep)
	}
	if !(a.opts.quiet && format == render.Text) {
		if err := render.DiagReport(a.ios.Out, format, a.mode(), rep); err != nil {
			return err
		}
	}
	if code := rep.ExitCode(); code != 0 {
		return &exitError{code: code, silent: true}
	}
	return nil
}

// recordDiag stores one history row per target. History is a convenience: a
// state problem is logged, it does not change the outcome of the checks.
func (a *app) recordDiag(ctx context.Context, rep *diag.Report) {
	st, err := a.store(ctx)
	if err != nil {
		a.log.Warn("diag history not recorded", "err", err)
		return
	}
	finished := rep.Started.Add(time.Duration(rep.Duration * float64(time.Second)))
	for _, t := range rep.Targets {
		detail, err := json.Marshal(t)
		if err != nil {
			a.log.Warn("diag history not recorded", "target", t.Name, "err", err)
			continue
		}
		if _, err := st.RecordRun(ctx, store.Run{Kind: "diag", Name: t.Name, Status: t.Status.String(),
			Started: rep.Started, Finished: finished, Detail: detail}); err != nil {
			a.log.Warn("diag history not recorded", "target", t.Name, "err", err)
		}
	}
}

type historyRow struct {
	ID       int64     `json:"id"`
	Target   string    `json:"target"`
	Status   string    `json:"status"`
	Score    int       `json:"score"`
	Band     string    `json:"band"`
	Checks   int       `json:"checks"`
	Failed   []string  `json:"failed,omitempty"`
	Started  time.Time `json:"started"`
	Duration float64   `json:"duration_seconds"`
}

func newDiagHistoryCmd(a *app) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "history [TARGET]",
		Short: "List recorded diag runs, newest first",
		Args:  maxArgs(1, "one TARGET"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := a.format()
			if err != nil {
				return err
			}
			st, err := a.store(cmd.Context())
			if err != nil {
				return err
			}
			runs, err := st.Runs(cmd.Context(), "diag", 0)
			if err != nil {
				return err
			}
			var rows []historyRow
			for _, r := range runs {
				if len(args) == 1 && r.Name != args[0] {
					continue
				}
				var tr diag.TargetReport
				if err := json.Unmarshal(r.Detail, &tr); err != nil {
					a.log.Warn("skipping unreadable history row", "id", r.ID, "err", err)
					continue
				}
				row := historyRow{ID: r.ID, Target: r.Name, Status: r.Status, Score: tr.Score, Band: tr.Band,
					Checks: len(tr.Checks), Started: r.Started, Duration: r.Finished.Sub(r.Started).Seconds()}
				for _, c := range tr.Checks {
					if c.Status.String() != "OK" {
						row.Failed = append(row.Failed, c.Rule)
					}
				}
				rows = append(rows, row)
				if limit > 0 && len(rows) >= limit {
					break
				}
			}
			if f == render.JSON {
				if rows == nil {
					rows = []historyRow{}
				}
				return render.WriteJSON(a.ios.Out, rows)
			}
			t := render.NewTable("id", "started", "target", "status", "score", "checks", "not ok")
			t.StatusColumn = 3
			for _, r := range rows {
				failed := "-"
				if len(r.Failed) > 0 {
					failed = fmt.Sprint(r.Failed)
				}
				t.Add(strconv.FormatInt(r.ID, 10), r.Started.Local().Format(time.RFC3339), r.Target, r.Status,
					fmt.Sprintf("%d %s", r.Score, r.Band), strconv.Itoa(r.Checks), failed)
			}
			return t.WriteText(a.ios.Out, a.mode())
		},
	}
	cmd.Flags().IntVarP(&limit, "limit", "n", 20, "show at most this many runs (0 = all)")
	return cmd
}
