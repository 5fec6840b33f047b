package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/diag"
	"github.com/netops-dev/netops/internal/render"
)

func newDiagPerfCmd(a *app) *cobra.Command {
	var (
		count     int
		interval  time.Duration
		port      int
		bwPort    int
		bwSeconds time.Duration
		noBW      bool
	)
	cmd := &cobra.Command{
		Use:   "perf TARGET",
		Short: "Latency and bandwidth summary for one target",
		Long: `Measure a target's performance: latency statistics over --count probes (TCP
connect time with --port, else ICMP echo) and TCP throughput up and down against
a bandwidth server on the target (netops diag bandwidth-server, port 9116, or
iperf3 on 5201). --no-bandwidth measures latency only.`,
		Example: `  netops diag perf 127.0.0.1 --count 50
  netops diag perf db1 --port 5432 --no-bandwidth`,
		Args: exactArgs(1, "one TARGET"),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := a.format(render.DiagFormats()...)
			if err != nil {
				return err
			}
			switch {
			case count < 1 || count > 10000:
				return usageErrorf(errors.New("--count must be between 1 and 10000"))
			case port < 0 || port > 65535:
				return usageErrorf(errors.New("--port must be between 1 and 65535 (or 0 for ICMP)"))
			case bwPort < 1 || bwPort > 65535:
				return usageErrorf(errors.New("--bandwidth-port must be between 1 and 65535"))
			case bwSeconds <= 0:
				return usageErrorf(errors.New("--bandwidth-time must be positive"))
			case interval <= 0:
				return usageErrorf(errors.New("--interval must be positive"))
			}
			t, err := a.oneTarget(args[0])
			if err != nil {
				return err
			}
			if t.Type == config.TargetNetwork {
				return usageErrorf(fmt.Errorf("diag perf measures one host or service, and %s is a network", t.Address))
			}
			checks := []diag.Check{{Target: t, Rule: config.Rule{Name: "latency", Check: config.CheckLatency, Count: count,
				Interval: config.Duration(interval), Port: port, Timeout: config.Duration(2 * time.Second), Severity: config.SeverityCritical}}}
			if !noBW {
				checks = append(checks, diag.Check{Target: t, Rule: config.Rule{Name: "bandwidth", Check: config.CheckBandwidth,
					Port: bwPort, Interval: config.Duration(bwSeconds), Timeout: config.Duration(3*bwSeconds + 5*time.Second),
					Severity: config.SeverityCritical}})
			}
			rep := diag.Run(cmd.Context(), checks, diag.Options{Probes: diag.Probes(), Concurrency: 1})
			if cmd.Context().Err() != nil {
				return errInterrupted
			}
			if err := render.DiagReport(a.ios.Out, format, a.mode(), rep); err != nil {
				return err
			}
			if code := rep.ExitCode(); code != 0 {
				return &exitError{code: code, silent: true}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVarP(&count, "count", "c", 20, "latency probes")
	f.DurationVar(&interval, "interval", 100*time.Millisecond, "time between latency probes")
	f.IntVar(&port, "port", 0, "measure latency as TCP connect time to this port (default: ICMP echo)")
	f.IntVar(&bwPort, "bandwidth-port", 9116, "port of the bandwidth server on the target (5201 = iperf3)")
	f.DurationVar(&bwSeconds, "bandwidth-time", 2*time.Second, "test length per direction")
	f.BoolVar(&noBW, "no-bandwidth", false, "measure latency only")
	return cmd
}
