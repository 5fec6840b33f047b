package probe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/netops-dev/netops/internal/config"
)

// Latency modes reported in Result.Mode.
const (
	LatencyModeTCP  = "tcp"
	LatencyModeICMP = "icmp"
)

// Defaults used when a rule leaves a field unset (as config.RuleDefaults).
const (
	latencyDefaultCount    = 5
	latencyDefaultInterval = 200 * time.Millisecond
	latencyDefaultTimeout  = 2 * time.Second
)

// LatencyDetails is the Details of a latency result.
type LatencyDetails struct {
	Address  string    `json:"address"`             // ip:port (tcp) or ip (icmp)
	Sent     int       `json:"sent"`                // probes sent
	Samples  []float64 `json:"samples,omitempty"`   // RTTs in seconds, in order
	ICMPMode string    `json:"icmp_mode,omitempty"` // unprivileged or raw, in icmp mode
}

// Latency measures round-trip times over r.Count probes (default 5) started
// every r.Interval (default 200ms), each waiting at most r.Timeout (default
// 2s). With a port (r.Port, else the port of the target address) a probe is a
// TCP connect (SYN to SYN-ACK, then close); without one it is an ICMP echo
// (see ICMP for the modes). Metrics: rtt (avg), rtt_min, rtt_max, rtt_stddev,
// rtt_p95 in seconds and loss (%). It only measures: the rule's warn/crit
// thresholds are applied by the caller. No successful probe at all is
// CRITICAL with the reason of the last failure.
func Latency(ctx context.Context, t Target, r config.Rule) Result {
	ip, fail, ok := lookupTargetIP(ctx, t)
	if !ok {
		return fail
	}
	o := icmpOptionsFor(r, latencyDefaultCount, latencyDefaultInterval, latencyDefaultTimeout)
	port := r.Port
	if port == 0 {
		port, _ = Port(t.Address)
	}
	if port > 0 && port <= 65535 {
		return latencyTCP(ctx, netip.AddrPortFrom(ip, uint16(port)), o)
	}
	run, err := icmpPing(ctx, ip, o)
	if err != nil && run.sent == 0 {
		res := icmpFailure(err, ip.String())
		res.Mode = LatencyModeICMP
		return res
	}
	det := LatencyDetails{Address: ip.String(), Sent: run.sent, ICMPMode: run.mode}
	var cause error
	switch {
	case run.sendErr != nil:
		cause = run.sendErr
	case err != nil:
		cause = err
	}
	return latencyResult(LatencyModeICMP, fmt.Sprintf("ICMP echo to %s", ip), det, run.rtts, cause, ReasonLoss)
}

// latencyTCP times o.count TCP connects to ap.
func latencyTCP(ctx context.Context, ap netip.AddrPort, o icmpOptions) Result {
	d := net.Dialer{Timeout: o.timeout, KeepAlive: -1}
	det := LatencyDetails{Address: ap.String()}
	var rtts []time.Duration
	var lastErr error
	start := time.Now()
	for i := range o.count {
		if i > 0 {
			// Probes start every interval, like ping, whatever each one took.
			wait := time.Until(start.Add(time.Duration(i) * o.interval))
			if !sleepCtx(ctx, wait) {
				break
			}
		}
		t0 := time.Now()
		c, err := d.DialTCP(ctx, "tcp", netip.AddrPort{}, ap)
		rtt := time.Since(t0)
		if ctx.Err() != nil {
			if err == nil {
				_ = c.Close()
			}
			break
		}
		det.Sent++
		if err != nil {
			if Classify(err) == ReasonResource {
				return Result{Status: Unknown, Reason: ReasonResource, Mode: LatencyModeTCP,
					Message: fmt.Sprintf("cannot measure TCP connect time to %s: %v (a local limit, not the target)", ap, err)}
			}
			lastErr = err
			continue
		}
		_ = c.Close()
		rtts = append(rtts, rtt)
	}
	if det.Sent == 0 {
		return Failf(Unknown, ReasonTimeout, "no TCP connect to %s before the deadline: %v", ap, ctx.Err())
	}
	return latencyResult(LatencyModeTCP, "TCP connect to "+ap.String(), det, rtts, lastErr, ReasonTimeout)
}

// latencyResult builds the result of a latency run from its samples; cause is
// why probes were lost (nil when none was), noCause the reason to give when
// everything was lost without an error (e.g. ICMP echoes with no reply).
func latencyResult(mode, what string, det LatencyDetails, rtts []time.Duration, cause error, noCause string) Result {
	res := Result{Mode: mode}
	lost := det.Sent - len(rtts)
	loss := 100.0
	if det.Sent > 0 {
		loss = float64(lost) / float64(det.Sent) * 100
	}
	st := rttStatsOf(rtts)
	if len(rtts) > 0 {
		res.AddMetric(MetricRTT, st.avg.Seconds(), "s")
		res.AddMetric("rtt_min", st.min.Seconds(), "s")
		res.AddMetric("rtt_max", st.max.Seconds(), "s")
		res.AddMetric("rtt_stddev", st.stddev.Seconds(), "s")
		res.AddMetric("rtt_p95", st.p95.Seconds(), "s")
	}
	res.AddMetric(MetricLoss, loss, "%")
	for _, d := range rtts {
		det.Samples = append(det.Samples, d.Seconds())
	}
	res.Details = det
	if len(rtts) == 0 {
		res.Status, res.Reason = Critical, noCause
		res.Message = fmt.Sprintf("%s: %d probes, none answered (100%% loss)", what, det.Sent)
		if cause != nil {
			if reason := Classify(cause); reason != ReasonError {
				res.Reason = reason
			}
			res.Message += ": " + cause.Error()
		}
		return res
	}
	res.Message = fmt.Sprintf("%s: %d/%d probes, rtt min/avg/max/p95 %s/%s/%s/%s, stddev %s, %s%% loss",
		what, len(rtts), det.Sent, FormatSeconds(st.min.Seconds()), FormatSeconds(st.avg.Seconds()),
		FormatSeconds(st.max.Seconds()), FormatSeconds(st.p95.Seconds()), FormatSeconds(st.stddev.Seconds()),
		formatPercent(loss))
	if cause != nil && lost > 0 {
		res.Message += " (last failure: " + cause.Error() + ")"
	}
	return res
}

// sleepCtx waits d or until ctx is done; it reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}
