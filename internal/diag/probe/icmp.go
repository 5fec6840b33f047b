package probe

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"

	probing "github.com/prometheus-community/pro-bing"

	"github.com/netops-dev/netops/internal/config"
)

// ICMP modes reported in Result.Mode.
const (
	ICMPModeUnprivileged = "unprivileged" // SOCK_DGRAM ICMP ("ping socket", net.ipv4.ping_group_range)
	ICMPModeRaw          = "raw"          // SOCK_RAW, needs CAP_NET_RAW or root
)

// Defaults used when a rule leaves a field unset (config.RuleDefaults has the
// same values for rules loaded with defaults).
const (
	icmpDefaultCount    = 3
	icmpDefaultInterval = time.Second
	icmpDefaultSize     = 56
	icmpDefaultTimeout  = 2 * time.Second
	// icmpMinSize is the smallest payload pro-bing can match replies with: an
	// 8-byte timestamp and a 16-byte tracker UUID.
	icmpMinSize = 24
)

// icmpPermissionFix is what a user can do when neither ICMP mode is allowed.
const icmpPermissionFix = `allow unprivileged ICMP with: sysctl -w net.ipv4.ping_group_range="0 2147483647", ` +
	`or grant raw sockets with: setcap cap_net_raw+ep $(command -v netops), or run as root`

// ICMPDetails is the Details of an icmp result.
type ICMPDetails struct {
	Address  string    `json:"address"`             // the IP address pinged
	Sent     int       `json:"sent"`                // echo requests sent
	Received int       `json:"received"`            // distinct echo replies received
	RTTs     []float64 `json:"rtts,omitempty"`      // seconds, in arrival order
	Dups     int       `json:"duplicates,omitzero"` // duplicate replies (not counted as received)
}

// ICMP sends r.Count echo requests (default 3) every r.Interval (default 1s)
// with r.Size payload bytes (default 56, at least 24) to the target host and
// waits r.Timeout (default 2s) after the last request for the replies. It
// tries an unprivileged ICMP socket first, then a raw socket, and reports the
// mode that ran. Metrics: rtt (avg), rtt_min, rtt_max, rtt_stddev, jitter (mean
// absolute difference of consecutive RTTs), all in seconds; loss (%), sent and
// received. No reply at all is CRITICAL (loss, or unreachable when sending
// failed); no permission for either mode is UNKNOWN with the fixes.
func ICMP(ctx context.Context, t Target, r config.Rule) Result {
	ip, fail, ok := lookupTargetIP(ctx, t)
	if !ok {
		return fail
	}
	run, err := icmpPing(ctx, ip, icmpOptionsFor(r, icmpDefaultCount, icmpDefaultInterval, icmpDefaultTimeout))
	if err != nil && run.sent == 0 {
		return icmpFailure(err, ip.String())
	}
	return icmpResult(ip, run, err)
}

// icmpResult builds the result of a ping run that sent something; err is why
// it stopped early, if it did.
func icmpResult(ip netip.Addr, run icmpRun, err error) Result {
	res := Result{Mode: run.mode}
	st := rttStatsOf(run.rtts)
	loss := run.loss()
	if len(run.rtts) > 0 {
		res.AddMetric(MetricRTT, st.avg.Seconds(), "s")
		res.AddMetric("rtt_min", st.min.Seconds(), "s")
		res.AddMetric("rtt_max", st.max.Seconds(), "s")
		res.AddMetric("rtt_stddev", st.stddev.Seconds(), "s")
		res.AddMetric("jitter", st.jitter.Seconds(), "s")
	}
	res.AddMetric(MetricLoss, loss, "%")
	res.AddMetric("sent", float64(run.sent), "")
	res.AddMetric("received", float64(len(run.rtts)), "")
	det := ICMPDetails{Address: ip.String(), Sent: run.sent, Received: len(run.rtts), Dups: run.dups}
	for _, d := range run.rtts {
		det.RTTs = append(det.RTTs, d.Seconds())
	}
	res.Details = det
	if len(run.rtts) == 0 {
		res.Status, res.Reason = Critical, ReasonLoss
		res.Message = fmt.Sprintf("no reply from %s: %d sent, 0 received (100%% loss)", ip, run.sent)
		if run.sendErr != nil {
			if reason := Classify(run.sendErr); reason != ReasonError {
				res.Reason = reason
			}
			res.Message += ": " + run.sendErr.Error()
		} else if err != nil {
			res.Message += ": " + err.Error()
		}
		return res
	}
	res.Message = fmt.Sprintf("%d/%d replies from %s (%s), rtt min/avg/max/stddev %s/%s/%s/%s, jitter %s, %s%% loss",
		len(run.rtts), run.sent, ip, run.mode, FormatSeconds(st.min.Seconds()), FormatSeconds(st.avg.Seconds()),
		FormatSeconds(st.max.Seconds()), FormatSeconds(st.stddev.Seconds()), FormatSeconds(st.jitter.Seconds()),
		formatPercent(loss))
	if err != nil {
		// Interrupted (the overall deadline): what was measured is still true.
		res.Message += " (stopped early: " + err.Error() + ")"
	}
	return res
}

// icmpOptions says how to ping.
type icmpOptions struct {
	count    int
	interval time.Duration
	size     int
	timeout  time.Duration // wait for replies after the last request
}

// icmpOptionsFor reads count, interval, size and timeout from r, with the
// given defaults for unset fields.
func icmpOptionsFor(r config.Rule, count int, interval, timeout time.Duration) icmpOptions {
	o := icmpOptions{count: r.Count, interval: r.Interval.D(), size: r.Size, timeout: r.Timeout.D()}
	if o.count <= 0 {
		o.count = count
	}
	if o.interval <= 0 {
		o.interval = interval
	}
	if o.size <= 0 {
		o.size = icmpDefaultSize
	}
	o.size = max(o.size, icmpMinSize)
	if o.timeout <= 0 {
		o.timeout = timeout
	}
	return o
}

// icmpRun is what one ping run measured.
type icmpRun struct {
	mode    string
	sent    int
	dups    int
	rtts    []time.Duration // one per distinct reply, in arrival order
	sendErr error           // the last error sending a request, if any
}

func (r icmpRun) loss() float64 {
	if r.sent == 0 {
		return 100
	}
	return float64(r.sent-len(r.rtts)) / float64(r.sent) * 100
}

// icmpPermissionError says that neither ICMP mode may be used.
type icmpPermissionError struct {
	unprivileged, raw error
}

func (e *icmpPermissionError) Error() string {
	return fmt.Sprintf("no permission to send ICMP (unprivileged socket: %v; raw socket: %v)", e.unprivileged, e.raw)
}

func (e *icmpPermissionError) Unwrap() []error { return []error{e.unprivileged, e.raw} }

// icmpPing pings ip: unprivileged first, then raw when the unprivileged socket
// is not allowed or not supported. A run that sent nothing returns an error;
// a run interrupted by ctx returns what it measured and ctx's error.
func icmpPing(ctx context.Context, ip netip.Addr, o icmpOptions) (icmpRun, error) {
	run, errU := icmpPingMode(ctx, ip, o, false)
	if errU == nil || !icmpTryRaw(errU) {
		return run, errU
	}
	run, errR := icmpPingMode(ctx, ip, o, true)
	if errR == nil {
		return run, nil
	}
	if Classify(errR) == ReasonPermission {
		return run, &icmpPermissionError{unprivileged: errU, raw: errR}
	}
	return run, errR
}

// icmpTryRaw reports whether an unprivileged ping failure means "try a raw
// socket": not allowed (ping_group_range) or not supported by the kernel.
func icmpTryRaw(err error) bool {
	return Classify(err) == ReasonPermission || errors.Is(err, syscall.EPROTONOSUPPORT) ||
		errors.Is(err, syscall.ESOCKTNOSUPPORT) || errors.Is(err, syscall.EAFNOSUPPORT)
}

// icmpPingMode runs one pro-bing pinger in one mode.
func icmpPingMode(ctx context.Context, ip netip.Addr, o icmpOptions, privileged bool) (icmpRun, error) {
	run := icmpRun{mode: ICMPModeUnprivileged}
	if privileged {
		run.mode = ICMPModeRaw
	}
	p := probing.New(ip.String())
	p.SetLogger(probing.NoopLogger{})
	p.SetPrivileged(privileged)
	p.SetIPAddr(&net.IPAddr{IP: ip.AsSlice(), Zone: ip.Zone()})
	p.Count = o.count
	p.Interval = o.interval
	p.Size = o.size
	p.Timeout = time.Duration(o.count-1)*o.interval + o.timeout
	p.RecordTTLs = false
	// Called from the pinger's send loop; read after RunWithContext returned.
	p.OnSendError = func(_ *probing.Packet, err error) { run.sendErr = err }
	err := p.RunWithContext(ctx)
	st := p.Statistics()
	run.sent, run.dups = st.PacketsSent, st.PacketsRecvDuplicates
	run.rtts = slices.Clone(st.Rtts)
	if err != nil {
		if run.sent == 0 {
			return run, fmt.Errorf("icmp %s ping %s: %w", run.mode, ip, err)
		}
		if ctx.Err() != nil {
			return run, fmt.Errorf("ping %s interrupted: %w", ip, ctx.Err())
		}
		run.sendErr = err
	}
	return run, nil
}

// icmpFailure turns an error that stopped a ping before anything was sent into
// a result: no permission is UNKNOWN with the ways to allow ICMP; anything else
// gets the status of its reason (unreachable, timeout, ...).
func icmpFailure(err error, addr string) Result {
	reason := Classify(err)
	if reason == ReasonPermission {
		return Failf(Unknown, ReasonPermission, "cannot ping %s: %v; %s", addr, err, icmpPermissionFix)
	}
	return Failf(StatusFor(reason), reason, "cannot ping %s: %v", addr, err)
}

// lookupTargetIP returns the IP address of the target's host: an IP literal
// as is, else the first address the system resolver returns. On failure it
// returns a CRITICAL result (nxdomain, dns or timeout) and false.
func lookupTargetIP(ctx context.Context, t Target) (netip.Addr, Result, bool) {
	host := Host(t.Address)
	if host == "" {
		return netip.Addr{}, Failf(Critical, ReasonError, "no host in target address %q", t.Address), false
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap(), Result{}, true
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err == nil && len(ips) == 0 {
		err = &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
	}
	if err != nil {
		return netip.Addr{}, lookupFailure(host, err), false
	}
	return ips[0].Unmap(), Result{}, true
}

// lookupFailure is the CRITICAL result of a failed name resolution: reason
// nxdomain (the name does not exist), timeout, or dns for anything else.
func lookupFailure(host string, err error) Result {
	reason := Classify(err)
	if reason != ReasonNXDomain && reason != ReasonTimeout {
		reason = ReasonDNS
	}
	return Failf(Critical, reason, "cannot resolve %s: %v", host, err)
}

// rttStats summarizes round-trip times.
type rttStats struct {
	min, max, avg, stddev, p95, jitter time.Duration
}

// rttStatsOf computes min, max, mean, population standard deviation, the 95th
// percentile (nearest rank) and jitter (mean absolute difference between
// consecutive samples, in the order given). Zero for no samples.
func rttStatsOf(rtts []time.Duration) rttStats {
	var s rttStats
	n := len(rtts)
	if n == 0 {
		return s
	}
	var sum float64
	s.min, s.max = rtts[0], rtts[0]
	for _, d := range rtts {
		sum += float64(d)
		s.min, s.max = min(s.min, d), max(s.max, d)
	}
	mean := sum / float64(n)
	var sq, jit float64
	for i, d := range rtts {
		sq += (float64(d) - mean) * (float64(d) - mean)
		if i > 0 {
			jit += math.Abs(float64(d - rtts[i-1]))
		}
	}
	s.avg = time.Duration(math.Round(mean))
	s.stddev = time.Duration(math.Round(math.Sqrt(sq / float64(n))))
	if n > 1 {
		s.jitter = time.Duration(math.Round(jit / float64(n-1)))
	}
	sorted := slices.Clone(rtts)
	slices.Sort(sorted)
	rank := int(math.Ceil(0.95*float64(n))) - 1
	s.p95 = sorted[max(rank, 0)]
	return s
}

// formatPercent renders a percentage without useless decimals: "0", "33.3".
func formatPercent(p float64) string {
	s := fmt.Sprintf("%.1f", p)
	return strings.TrimSuffix(s, ".0")
}
