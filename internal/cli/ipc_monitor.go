package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/fsutil"
	"github.com/netops-dev/netops/internal/ipc"
	"github.com/netops-dev/netops/internal/natsbackend"
	"github.com/netops-dev/netops/internal/render"
	"github.com/netops-dev/netops/internal/store"
)

// openNATSIPC opens the ipc backend on NATS JetStream.
func openNATSIPC(ctx context.Context, cfg config.Backend) (ipc.Backend, error) {
	b, err := natsbackend.OpenIPC(ctx, cfg, "netops ipc", natsbackend.IPCOptions{Replicas: cfg.Replicas})
	if err != nil {
		return nil, err
	}
	return b, nil
}

func runRecord(kind, name, status string, started time.Time, detail []byte) store.Run {
	return store.Run{Kind: kind, Name: name, Status: status, Started: started, Finished: time.Now(), Detail: detail}
}

func ipcMonitorCmds(a *app) []*cobra.Command {
	return []*cobra.Command{newIPCMonitorCmd(a), newIPCReportCmd(a)}
}

// ipcSnapshot reads the stats of every queue and channel.
func (a *app) ipcSnapshot(ctx context.Context, b ipc.Backend) ([]ipc.QueueStats, []ipc.ChannelStats, error) {
	qs, err := a.allQueueStats(ctx, b)
	if err != nil {
		return nil, nil, err
	}
	cs, err := b.Channels(ctx)
	if err != nil {
		return nil, nil, err
	}
	return qs, cs, nil
}

func newIPCMonitorCmd(a *app) *cobra.Command {
	var (
		interval time.Duration
		count    int
	)
	cmd := &cobra.Command{
		Use:   "monitor",
		Short: "Show queue depths, in/out rates and subscribers every --interval",
		Long: `Every --interval, print one line per queue (ready, in flight, dead letters, messages
sent and acknowledged per second since the previous line, dropped) and per channel
(published per second, durable subscribers and what each has pending). Rates are
computed from the backend's counters, so they include every process. Stops after
--count samples or on Ctrl-C (exit 0). --output json prints one JSON object per
sample.`,
		Example: `  netops ipc monitor --interval 2s
  netops ipc monitor --count 1 --output json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := a.format()
			if err != nil {
				return err
			}
			if interval < 100*time.Millisecond {
				return usageErrorf(errors.New("--interval must be at least 100ms"))
			}
			if count < 0 {
				return usageErrorf(errors.New("--count must not be negative"))
			}
			ctx := cmd.Context()
			b, err := a.ipcBackend(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			var prev *ipc.Sample
			tk := time.NewTicker(interval)
			defer tk.Stop()
			for n := 0; count == 0 || n < count; n++ {
				if n > 0 {
					select {
					case <-ctx.Done():
						return nil // stopped by a signal: a clean stop
					case <-tk.C:
					}
				}
				qs, cs, err := a.ipcSnapshot(ctx, b)
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
				s := ipc.NewSample(time.Now(), prev, qs, cs)
				prev = s
				if err := a.writeSample(s, format); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().DurationVarP(&interval, "interval", "i", 5*time.Second, "time between samples")
	cmd.Flags().IntVarP(&count, "count", "n", 0, "stop after this many samples (0: until Ctrl-C)")
	return cmd
}

func rateText(s *ipc.Sample, r float64) string {
	if s.First {
		return "-"
	}
	return strconv.FormatFloat(r, 'f', 1, 64)
}

func (a *app) writeSample(s *ipc.Sample, format render.Format) error {
	if format == render.JSON {
		return render.WriteJSONLine(a.ios.Out, s)
	}
	ts := s.Time.Local().Format("15:04:05")
	t := render.NewTable("time", "kind", "name", "ready", "in flight", "dead", "in/s", "out/s", "dropped")
	for _, q := range s.Queues {
		t.Add(ts, "queue", q.Name, strconv.Itoa(q.Ready), strconv.Itoa(q.InFlight), strconv.Itoa(q.Dead),
			rateText(s, q.InRate), rateText(s, q.OutRate), strconv.FormatUint(q.Dropped, 10))
	}
	for _, c := range s.Channels {
		subs := "-"
		if len(c.Subscribers) > 0 {
			subs = ""
			for i, sb := range c.Subscribers {
				if i > 0 {
					subs += ","
				}
				subs += sb.Name + ":" + strconv.Itoa(sb.Pending)
			}
		}
		t.Add(ts, "channel", c.Name, subs, "-", "-", rateText(s, c.PubRate), "-", "-")
	}
	if len(t.Rows) == 0 {
		t.Add(ts, "-", "(no queues or channels)", "-", "-", "-", "-", "-", "-")
	}
	m := a.mode()
	if m.TTY {
		fmt.Fprintln(a.ios.Out)
	}
	return t.WriteText(a.ios.Out, m)
}

func newIPCReportCmd(a *app) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Report queues, subscribers, handlers, totals and recommendations",
		Long: `Write the IPC report: every queue (depth per priority, in flight, dead letters,
oldest age, counters), every channel with its durable subscribers and what they
have pending, the consume handlers run from this host (from the local history:
every 'ipc consume' run is recorded in the state database), totals, and
recommendations derived from these numbers. --file writes it to a file
(atomically, mode 0600) instead of stdout.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := a.format()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			b, err := a.ipcBackend(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			qs, cs, err := a.ipcSnapshot(ctx, b)
			if err != nil {
				return err
			}
			st, err := a.store(ctx)
			if err != nil {
				return err
			}
			recs, err := st.Runs(ctx, "ipc-consume", 0)
			if err != nil {
				return err
			}
			var runs []ipc.ConsumeRun
			for _, r := range recs {
				var run ipc.ConsumeRun
				if json.Unmarshal(r.Detail, &run) == nil {
					run.Started, run.Finished = r.Started, r.Finished
					runs = append(runs, run)
				}
			}
			rep := ipc.Summarize(time.Now(), qs, cs, runs)
			write := func(w io.Writer, m render.Mode) error {
				if format == render.JSON {
					return render.WriteJSON(w, rep)
				}
				return writeIPCReport(w, m, rep)
			}
			if file == "" {
				return write(a.ios.Out, a.mode())
			}
			var buf bytesBuffer
			if err := write(&buf, render.Mode{TTY: true}); err != nil {
				return err
			}
			if err := fsutil.WriteFileAtomic(file, buf.b, 0o600); err != nil {
				return fmt.Errorf("write report: %w", err)
			}
			if !a.opts.quiet {
				fmt.Fprintf(a.ios.ErrOut, "report written to %s\n", file)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "write the report to this file instead of stdout")
	return cmd
}

type bytesBuffer struct{ b []byte }

func (w *bytesBuffer) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

func writeIPCReport(w io.Writer, m render.Mode, rep *ipc.Report) error {
	tm := render.Mode{TTY: true, Color: m.Color}
	fmt.Fprintf(w, "IPC REPORT\ngenerated: %s\n\nQUEUES\n", rep.Generated.Local().Format(time.RFC3339))
	qt := render.NewTable("queue", "high", "normal", "low", "in flight", "dead", "size", "overflow", "oldest", "sent", "acked", "dropped")
	for _, q := range rep.Queues {
		qt.Add(q.Name, strconv.Itoa(q.ByPriority[ipc.High]), strconv.Itoa(q.ByPriority[ipc.Normal]), strconv.Itoa(q.ByPriority[ipc.Low]),
			strconv.Itoa(q.InFlight), strconv.Itoa(q.Dead), fmt.Sprintf("%d/%d", q.Ready+q.InFlight, q.MaxSize), string(q.Overflow),
			age(rep.Generated, q.Oldest), strconv.FormatUint(q.Sent, 10), strconv.FormatUint(q.Acked, 10), strconv.FormatUint(q.Dropped, 10))
	}
	if len(rep.Queues) == 0 {
		fmt.Fprintln(w, "  (none)")
	} else if err := qt.WriteText(w, tm); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nCHANNELS AND SUBSCRIBERS")
	ct := render.NewTable("channel", "published", "stored", "last", "subscriber", "pending", "active")
	for _, c := range rep.Channels {
		if len(c.Subscribers) == 0 {
			ct.Add(c.Name, strconv.FormatUint(c.Published, 10), strconv.Itoa(c.Stored), age(rep.Generated, c.Last), "-", "-", "-")
		}
		for _, s := range c.Subscribers {
			ct.Add(c.Name, strconv.FormatUint(c.Published, 10), strconv.Itoa(c.Stored), age(rep.Generated, c.Last), s.Name,
				strconv.Itoa(s.Pending), age(rep.Generated, s.Active))
		}
	}
	if len(rep.Channels) == 0 {
		fmt.Fprintln(w, "  (none)")
	} else if err := ct.WriteText(w, tm); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nHANDLERS (ipc consume runs from this host)")
	ht := render.NewTable("queue", "handler", "runs", "handled", "acked", "failed", "dead", "last")
	for _, h := range rep.Handlers {
		ht.Add(h.Queue, h.Handler, strconv.Itoa(h.Runs), strconv.Itoa(h.Handled), strconv.Itoa(h.Acked), strconv.Itoa(h.Failed),
			strconv.Itoa(h.Dead), h.Last.Local().Format(time.RFC3339))
	}
	if len(rep.Handlers) == 0 {
		fmt.Fprintln(w, "  (none)")
	} else if err := ht.WriteText(w, tm); err != nil {
		return err
	}
	t := rep.Totals
	fmt.Fprintf(w, "\nTOTALS\n  queues: %d, ready: %d, in flight: %d, dead letters: %d\n  sent: %d, acknowledged: %d, dropped: %d\n"+
		"  channels: %d, published: %d, durable subscribers: %d\n  handler runs: %d, messages handled: %d, failed: %d\n",
		t.Queues, t.Ready, t.InFlight, t.Dead, t.Sent, t.Acked, t.Dropped, t.Channels, t.Published, t.Subscribers, t.HandlerRuns, t.Handled, t.Failed)
	fmt.Fprintln(w, "\nRECOMMENDATIONS")
	for _, r := range rep.Recommendations {
		fmt.Fprintf(w, "  - %s\n", r)
	}
	return nil
}
