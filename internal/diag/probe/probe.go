// Package probe holds one file per diag check kind. A probe measures one thing
// on the real network (never simulated) and returns a Result; thresholds from the
// rule are applied afterwards by ApplyThresholds, the same way for every probe.
//
// Probes take context.Context first and must return when it is done; the engine
// gives each check a deadline from the rule's timeout. Probes never print, never
// exit and keep no package-level state.
package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/netops-dev/netops/internal/config"
)

// Status is the outcome of a check, ordered from best to worst for exit codes
// (Nagios plugin convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
type Status int

const (
	OK Status = iota
	Warning
	Critical
	Unknown
)

func (s Status) String() string {
	switch s {
	case OK:
		return "OK"
	case Warning:
		return "WARNING"
	case Critical:
		return "CRITICAL"
	default:
		return "UNKNOWN"
	}
}

// MarshalJSON writes the status as its name.
func (s Status) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads a status name.
func (s *Status) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err != nil {
		return err
	}
	switch name {
	case "OK":
		*s = OK
	case "WARNING":
		*s = Warning
	case "CRITICAL":
		*s = Critical
	case "UNKNOWN":
		*s = Unknown
	default:
		return fmt.Errorf("unknown status %q", name)
	}
	return nil
}

// Worse returns the worse of two statuses (UNKNOWN ranks above CRITICAL for the
// exit code only when nothing is CRITICAL; see Worst).
func Worse(a, b Status) Status {
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// rank orders statuses for "worst": CRITICAL > UNKNOWN > WARNING > OK, so a real
// failure is never hidden behind a check that could not run.
func rank(s Status) int {
	switch s {
	case OK:
		return 0
	case Warning:
		return 1
	case Unknown:
		return 2
	default:
		return 3
	}
}

// Reason codes: why a check is not OK. Stable strings for scripts and reports.
const (
	ReasonRefused     = "refused"     // TCP RST / connection refused
	ReasonTimeout     = "timeout"     // no answer within the timeout (filtered, down)
	ReasonUnreachable = "unreachable" // no route, host/network unreachable
	ReasonNXDomain    = "nxdomain"    // name does not exist
	ReasonDNS         = "dns"         // resolution failed otherwise (SERVFAIL, no answer)
	ReasonTLS         = "tls"         // TLS handshake or verification failed
	ReasonTLSExpired  = "tls-expired" // certificate expired or expiring within crit/warn days
	ReasonStatus      = "status"      // unexpected HTTP status
	ReasonMismatch    = "mismatch"    // banner/body/header/answer did not match the expectation
	ReasonThreshold   = "threshold"   // a measured value crossed warn/crit
	ReasonLoss        = "loss"        // packets lost
	ReasonPermission  = "permission"  // not allowed to run (raw sockets, ...)
	ReasonResource    = "resource"    // local resource exhausted (EMFILE, EADDRNOTAVAIL)
	ReasonPolicy      = "policy"      // a security assertion failed (port must be closed, ...)
	ReasonExit        = "exit"        // exec: non-zero exit
	ReasonError       = "error"       // anything else
)

// Metric is one measured value. Times are in seconds, ratios in percent.
type Metric struct {
	Name  string  `json:"name"`           // e.g. "rtt", "loss", "connect_time", "cert_days_left"
	Value float64 `json:"value"`          // in Unit
	Unit  string  `json:"unit,omitempty"` // "s", "%", "days", "Mbps", "bytes", "" (a count)
}

// Well-known metric names that thresholds apply to.
const (
	MetricRTT      = "rtt"            // seconds; warn/crit rtt (higher is worse)
	MetricLoss     = "loss"           // percent; warn/crit loss (higher is worse)
	MetricCertDays = "cert_days_left" // days; warn/crit days (lower is worse)
	MetricMbps     = "mbps"           // Mbit/s; warn/crit mbps (lower is worse)
)

// Result is what a probe measured.
type Result struct {
	Status  Status   `json:"status"`
	Reason  string   `json:"reason,omitempty"` // a Reason* code when Status != OK
	Message string   `json:"message"`          // one line for humans: what was seen
	Metrics []Metric `json:"metrics,omitempty"`
	// Details is probe-specific structured data (open ports, live hosts, hops,
	// HTTP phases, DNS answers...). It must marshal to JSON.
	Details any `json:"details,omitempty"`
	// Mode says how the probe ran when there are several ways (icmp:
	// "unprivileged" or "raw"; bandwidth: "netops" or "iperf3").
	Mode string `json:"mode,omitempty"`
}

// Metric returns the metric named name.
func (r *Result) Metric(name string) (Metric, bool) {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m, true
		}
	}
	return Metric{}, false
}

// AddMetric appends a metric.
func (r *Result) AddMetric(name string, value float64, unit string) {
	r.Metrics = append(r.Metrics, Metric{Name: name, Value: value, Unit: unit})
}

// Target is what a check runs against.
type Target struct {
	Name    string `json:"name"`
	Type    string `json:"type"`    // host, network, service
	Address string `json:"address"` // as configured: IP, hostname, CIDR, URL or host:port
}

// Func is a probe: measure rule's check against t until ctx is done.
type Func func(ctx context.Context, t Target, rule config.Rule) Result

// Failf returns a result with status, reason and a formatted message.
func Failf(status Status, reason, format string, args ...any) Result {
	return Result{Status: status, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Host returns the host part of a target address: the host of a URL, of
// host:port, a bare IP or hostname, or the network address of a CIDR.
func Host(address string) string {
	if strings.Contains(address, "://") {
		if u, err := url.Parse(address); err == nil {
			return u.Hostname()
		}
	}
	if p, err := netip.ParsePrefix(address); err == nil {
		return p.Addr().String()
	}
	if h, _, err := net.SplitHostPort(address); err == nil {
		return h
	}
	return strings.Trim(address, "[]")
}

// Port returns the port of a target address (explicit, or the scheme's default
// for URLs) and whether one was found.
func Port(address string) (int, bool) {
	if strings.Contains(address, "://") {
		u, err := url.Parse(address)
		if err != nil {
			return 0, false
		}
		if p := u.Port(); p != "" {
			n, err := strconv.Atoi(p)
			return n, err == nil
		}
		switch u.Scheme {
		case "http":
			return 80, true
		case "https":
			return 443, true
		case "nats":
			return 4222, true
		}
		return 0, false
	}
	if _, p, err := net.SplitHostPort(address); err == nil {
		n, err := strconv.Atoi(p)
		return n, err == nil
	}
	return 0, false
}

// Seconds converts a duration to float seconds for metrics.
func Seconds(d time.Duration) float64 { return d.Seconds() }

// ApplyThresholds raises res.Status when a metric crosses the rule's warn or
// crit limits: rtt and loss (higher is worse), cert days left and Mbps (lower is
// worse), and a Nagios range on the first metric. A result that is already
// CRITICAL or UNKNOWN for its own reason is left alone. The message gains the
// limit that was crossed.
func ApplyThresholds(res *Result, rule config.Rule) {
	if res.Status == Critical || res.Status == Unknown {
		return
	}
	if why, ok := crossed(res, rule.Crit); ok {
		res.Status = Critical
		if res.Reason == "" || res.Reason == ReasonThreshold {
			res.Reason = thresholdReason(why)
		}
		res.Message = appendWhy(res.Message, why+" (crit)")
		return
	}
	if why, ok := crossed(res, rule.Warn); ok {
		res.Status = Warning
		if res.Reason == "" {
			res.Reason = thresholdReason(why)
		}
		res.Message = appendWhy(res.Message, why+" (warn)")
	}
}

func thresholdReason(why string) string {
	switch {
	case strings.HasPrefix(why, "certificate"):
		return ReasonTLSExpired
	case strings.HasPrefix(why, "loss"):
		return ReasonLoss
	}
	return ReasonThreshold
}

func appendWhy(msg, why string) string {
	if msg == "" {
		return why
	}
	return msg + "; " + why
}

// crossed reports the first limit of th that res crosses, as a phrase.
func crossed(res *Result, th config.Threshold) (string, bool) {
	if th.RTT > 0 {
		if m, ok := res.Metric(MetricRTT); ok && m.Value > th.RTT.D().Seconds() {
			return fmt.Sprintf("rtt %s > %s", FormatSeconds(m.Value), th.RTT), true
		}
	}
	if th.Loss != nil {
		if m, ok := res.Metric(MetricLoss); ok && m.Value > float64(*th.Loss) {
			return fmt.Sprintf("loss %s%% > %s", strconv.FormatFloat(m.Value, 'f', -1, 64), *th.Loss), true
		}
	}
	if th.Days > 0 {
		if m, ok := res.Metric(MetricCertDays); ok && m.Value < float64(th.Days) {
			return fmt.Sprintf("certificate expires in %.1f days < %d", m.Value, th.Days), true
		}
	}
	if th.Mbps > 0 {
		if m, ok := res.Metric(MetricMbps); ok && m.Value < th.Mbps {
			return fmt.Sprintf("throughput %.1f Mbps < %g", m.Value, th.Mbps), true
		}
	}
	if th.Range != "" && len(res.Metrics) > 0 {
		if r, err := config.ParseRange(th.Range); err == nil && r.Alert(res.Metrics[0].Value) {
			m := res.Metrics[0]
			return fmt.Sprintf("%s %g%s outside range %s", m.Name, m.Value, m.Unit, th.Range), true
		}
	}
	return "", false
}

// FormatSeconds renders seconds for humans: "0.213ms", "12.4ms", "1.52s".
func FormatSeconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Millisecond:
		return strconv.FormatFloat(s*1000, 'f', 3, 64) + "ms"
	case d < time.Second:
		return strconv.FormatFloat(s*1000, 'f', 1, 64) + "ms"
	default:
		return strconv.FormatFloat(s, 'f', 2, 64) + "s"
	}
}
