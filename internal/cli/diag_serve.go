package cli

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/netops-dev/netops/internal/diag"
	"github.com/netops-dev/netops/internal/diag/healthz"
)

func newDiagServeCmd(a *app) *cobra.Command {
	var (
		o        diagOptions
		listen   string
		cacheFor time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve [TARGET...]",
		Short: "Serve diag results over HTTP: health endpoint (200/503) and Prometheus metrics",
		Long: `Serve the checks of 'netops diag' over HTTP, for load balancers, uptime checkers
and Prometheus:

  GET /  or /healthz   200 when every check is OK or WARNING, 503 otherwise; the JSON
                       report, or Prometheus text when Accept asks for text/plain
                       or OpenMetrics (or ?format=prometheus)
  GET /metrics         Prometheus text exposition, always 200

Checks run on demand and the report is cached for --cache, so frequent polling
does not multiply probes. Listens on loopback unless --listen says otherwise.
Stop with SIGINT or SIGTERM.`,
		Example: `  netops diag serve --listen 127.0.0.1:9115
  curl -s -H 'Accept: text/plain' http://127.0.0.1:9115/`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			targets, checks, err := o.plan(a, args)
			if err != nil {
				return err
			}
			probes := diag.Probes()
			maxTime := o.maxTime
			if maxTime == 0 {
				maxTime = 30 * time.Second
			}
			h := &healthz.Handler{CacheFor: cacheFor, Run: func(rctx context.Context) *diag.Report {
				rep := diag.Run(rctx, checks, diag.Options{Probes: probes, Concurrency: o.concurrency, MaxTime: maxTime})
				rep.AddTargets(targets)
				if o.history {
					a.recordDiag(rctx, rep)
				}
				return rep
			}}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("diag serve: %w", err)
			}
			srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
			if !a.opts.quiet {
				fmt.Fprintf(a.ios.ErrOut, "netops diag serving %d checks on http://%s/\n", len(checks), ln.Addr())
			}
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case err := <-errc:
				return fmt.Errorf("diag serve: %w", err)
			case <-ctx.Done():
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
				h.Wait() // let a round in progress finish before the store closes
				return nil
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:9115", "address to listen on")
	f.DurationVar(&cacheFor, "cache", 10*time.Second, "reuse a report for this long")
	o.addFlags(f, "serve", "time limit per round (default 30s)", true)
	return cmd
}
