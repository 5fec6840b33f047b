package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/netops-dev/netops/internal/diag"
	"github.com/netops-dev/netops/internal/render"
)

type monitorOptions struct {
	diagOptions
	interval     time.Duration
	rounds       int
	alertAfter   int
	recoverAfter int
	alertProg    string
	alertExec    []string
	alertTimeout time.Duration
	alertChannel string
}

type monitorLine struct {
	Round    int            `json:"round"`
	Time     time.Time      `json:"time"`
	Status   string         `json:"status"`
	Score    int            `json:"score"`
	Band     string         `json:"band"`
	Counts   map[string]int `json:"counts"`
	Failing  []string       `json:"failing,omitempty"`
	Alerts   []diag.Alert   `json:"alerts,omitempty"`
	Duration float64        `json:"duration_seconds"`
}

func newDiagMonitorCmd(a *app) *cobra.Command {
	var o monitorOptions
	cmd := &cobra.Command{
		Use:   "monitor [TARGET...] [--alert-exec PROG [-- ARGS...]]",
		Short: "Run diag in rounds, one line per round, and alert on sustained failures",
		Long: `Run the same checks as 'netops diag' every --interval, print one line per round
(tab-separated when piped, JSON Lines with --output json), and raise an alert when
a check has failed --alert-after rounds in a row, and once more when it has
passed --recover-after rounds in a row again. Requiring several rounds both ways
damps a flapping check: one alert, not one per round.

An alert runs the --alert-exec program (its arguments, if any, go after "--")
with the alert as JSON on stdin and NETOPS_ALERT_STATE, _TARGET, _RULE,
_STATUS, _REASON, _MESSAGE in its environment. It never goes through a shell.

With --alert-channel CHANNEL, each alert (firing and resolved) is also published
as one JSON event on that ipc channel (configured backend: local or NATS): the
alert as --alert-exec gets it plus "kind": "diag.alert" and "time". An alert
that cannot be published is a one-line warning on stderr; the monitor goes on
and its exit code does not change.

SIGINT or SIGTERM stops the monitor at once (exit 0); the round in progress is
discarded, not printed or recorded.`,
		Example: `  netops diag monitor web1 db1 --interval 30s --alert-after 3
  netops diag monitor --tag prod --alert-exec /usr/local/bin/page-oncall -- --team net
  netops diag monitor --tag prod --alert-channel alerts`,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Arguments after "--" belong to the alert program.
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				if o.alertProg == "" {
					return usageErrorf(errors.New(`arguments after "--" are for --alert-exec, which is not set`))
				}
				o.alertExec = append(o.alertExec, args[dash:]...)
				args = args[:dash]
			}
			if o.alertProg != "" {
				o.alertExec = append([]string{o.alertProg}, o.alertExec...)
			}
			return runDiagMonitor(cmd.Context(), a, args, o)
		},
	}
	f := cmd.Flags()
	o.addFlags(f, "monitor", "time limit per round (default: the interval)", false)
	f.DurationVar(&o.interval, "interval", 60*time.Second, "time between the starts of two rounds")
	f.IntVar(&o.rounds, "rounds", 0, "stop after this many rounds (0 = run until stopped)")
	f.IntVar(&o.alertAfter, "alert-after", 3, "failing rounds in a row before an alert fires")
	f.IntVar(&o.recoverAfter, "recover-after", 2, "passing rounds in a row before a fired alert resolves")
	f.StringVar(&o.alertProg, "alert-exec", "", "program run for each alert, with the alert as JSON on stdin (its arguments after \"--\")")
	f.DurationVar(&o.alertTimeout, "alert-timeout", 30*time.Second, "time limit for one alert program run")
	f.StringVar(&o.alertChannel, "alert-channel", "", "also publish each alert as a JSON event on this ipc channel (failure: warning, same exit code)")
	return cmd
}

func runDiagMonitor(ctx context.Context, a *app, args []string, o monitorOptions) error {
	format, err := a.format()
	if err != nil {
		return err
	}
	switch {
	case o.interval < 100*time.Millisecond:
		return usageErrorf(errors.New("--interval must be at least 100ms"))
	case o.alertAfter < 1 || o.recoverAfter < 1:
		return usageErrorf(errors.New("--alert-after and --recover-after must be at least 1"))
	case o.rounds < 0:
		return usageErrorf(errors.New("--rounds must not be negative"))
	}
	maxTime := o.maxTime
	if maxTime == 0 {
		maxTime = o.interval
	}
	notify, err := a.newNotifier("--alert-channel", o.alertChannel)
	if err != nil {
		return err
	}
	defer notify.close()
	targets, checks, err := o.plan(a, args)
	if err != nil {
		return err
	}
	mon := &diag.Monitor{AlertAfter: o.alertAfter, RecoverAfter: o.recoverAfter}
	probes := diag.Probes()
	ticker := time.NewTicker(o.interval)
	defer ticker.Stop()
	for round := 1; ; round++ {
		rep := diag.Run(ctx, checks, diag.Options{Probes: probes, Concurrency: o.concurrency, MaxTime: maxTime})
		if ctx.Err() != nil {
			return nil // stopped by a signal: a clean stop, not a failure
		}
		rep.AddTargets(targets)
		if !o.noHistory {
			a.recordDiag(ctx, rep)
		}
		alerts := mon.Observe(rep, time.Now())
		line := monitorLine{Round: round, Time: rep.Started, Status: rep.Status.String(), Score: rep.Score,
			Band: rep.Band, Counts: rep.Counts, Alerts: alerts, Duration: rep.Duration}
		for _, t := range rep.Targets {
			for _, c := range t.Checks {
				if c.Status.String() != "OK" {
					line.Failing = append(line.Failing, t.Name+"/"+c.Rule+":"+c.Status.String())
				}
			}
		}
		if err := writeMonitorLine(a, format, line); err != nil {
			return err
		}
		for _, al := range alerts {
			notify.publish(ctx, eventDiagAlert, "alert "+al.State+" "+al.Target+"/"+al.Rule, newAlertEvent(al))
			if len(o.alertExec) == 0 {
				continue
			}
			actx, cancel := context.WithTimeout(ctx, o.alertTimeout)
			err := diag.RunAlertExec(actx, o.alertExec, os.Environ(), al)
			cancel()
			if err != nil {
				a.log.Error("alert not delivered", "target", al.Target, "rule", al.Rule, "state", al.State, "err", err)
			}
		}
		if o.rounds > 0 && round >= o.rounds {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

func writeMonitorLine(a *app, f render.Format, l monitorLine) error {
	if f == render.JSON {
		return render.WriteJSONLine(a.ios.Out, l)
	}
	failing := "-"
	if len(l.Failing) > 0 {
		failing = strings.Join(l.Failing, " ")
	}
	var alerts []string
	for _, al := range l.Alerts {
		alerts = append(alerts, fmt.Sprintf("ALERT %s %s/%s %s", al.State, al.Target, al.Rule, al.Status))
	}
	t := render.NewTable()
	t.Add(l.Time.Local().Format(time.RFC3339), fmt.Sprintf("round %d", l.Round), render.Status(a.ios.ColorEnabled() && a.ios.IsStdoutTTY(), l.Status),
		fmt.Sprintf("score %d %s", l.Score, l.Band), failing, strings.Join(alerts, "; "))
	return t.WriteText(a.ios.Out, render.Mode{})
}
