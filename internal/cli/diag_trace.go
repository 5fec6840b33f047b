package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/diag/probe"
	"github.com/netops-dev/netops/internal/render"
)

func newDiagTraceCmd(a *app) *cobra.Command {
	var (
		maxHops int
		wait    time.Duration
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "trace TARGET",
		Short: "Trace the path to a target, mtr-like: per hop address, loss and RTT",
		Long: `Trace the network path to a target with probes of increasing TTL, three per hop:
ICMP echo over a raw socket (root or CAP_NET_RAW), else UDP probes whose ICMP
answers are read from the socket's error queue (Linux, no privilege). Each hop
shows its address, probes sent and received, loss and min/avg/max RTT.
Exit 0 when the destination answered, 2 when it did not.`,
		Example: `  netops diag trace 127.0.0.1
  netops diag trace web1 --max-hops 20 -o json`,
		Args: exactArgs(1, "one TARGET"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := a.format()
			if err != nil {
				return err
			}
			if maxHops < 1 || maxHops > 255 {
				return usageErrorf(errors.New("--max-hops must be between 1 and 255"))
			}
			t, err := a.oneTarget(args[0])
			if err != nil {
				return err
			}
			res := probe.Traceroute(cmd.Context(), probe.Target{Name: t.Name, Type: t.Type, Address: t.Address},
				config.Rule{Check: config.CheckTraceroute, Count: maxHops, Interval: config.Duration(wait), Timeout: config.Duration(timeout)})
			if cmd.Context().Err() != nil {
				return errInterrupted
			}
			if f == render.JSON {
				if err := render.WriteJSON(a.ios.Out, res); err != nil {
					return err
				}
			} else if err := writeTrace(a, res); err != nil {
				return err
			}
			if res.Status != probe.OK {
				if f != render.JSON {
					fmt.Fprintf(a.ios.ErrOut, "netops: %s\n", res.Message)
				}
				return &exitError{code: int(res.Status), silent: true}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&maxHops, "max-hops", 30, "highest TTL probed")
	cmd.Flags().DurationVar(&wait, "wait", time.Second, "how long each round of probes waits for answers")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "limit for the whole trace")
	return cmd
}

func writeTrace(a *app, res probe.Result) error {
	det, ok := res.Details.(probe.TraceDetails)
	if !ok {
		if p, okp := res.Details.(*probe.TraceDetails); okp && p != nil {
			det, ok = *p, true
		}
	}
	if !ok {
		_, err := fmt.Fprintln(a.ios.Out, res.Message)
		return err
	}
	t := render.NewTable("hop", "address", "sent", "recv", "loss", "min", "avg", "max", "note")
	for _, h := range det.Hops {
		addr := h.Address
		if addr == "" {
			addr = "*"
		}
		if h.Name != "" {
			addr += " (" + h.Name + ")"
		}
		note := h.Unreachable
		if len(h.Others) > 0 {
			note = strings.TrimSpace(note + " also: " + strings.Join(h.Others, ", "))
		}
		ms := func(s float64) string {
			if h.Received == 0 {
				return "-"
			}
			return probe.FormatSeconds(s)
		}
		t.Add(strconv.Itoa(h.TTL), addr, strconv.Itoa(h.Sent), strconv.Itoa(h.Received),
			strconv.FormatFloat(h.Loss, 'f', 0, 64)+"%", ms(h.Min), ms(h.Avg), ms(h.Max), render.Dash(note))
	}
	return t.WriteText(a.ios.Out, a.mode())
}
