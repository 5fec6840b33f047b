package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/diag/bandwidth"
)

// Bandwidth metrics besides MetricMbps (the lower of the two directions).
const (
	MetricMbpsUp   = "mbps_up"
	MetricMbpsDown = "mbps_down"
)

// IPerf3Port is the iperf3 server port; a bandwidth rule with this port is
// measured with the iperf3 program.
const IPerf3Port = 5201

const (
	bwDefaultTest = 2 * time.Second // per direction when the rule sets no timeout
	bwMaxTest     = 3 * time.Second // per direction at most, from the timeout
	bwMinTest     = 100 * time.Millisecond
	bwSlack       = 500 * time.Millisecond // connection setup and trailer per direction
)

// BandwidthDetails is the Details of a bandwidth result.
type BandwidthDetails struct {
	Server string                `json:"server"` // host:port measured against
	Up     bandwidth.Measurement `json:"up"`
	Down   bandwidth.Measurement `json:"down"`
}

// Bandwidth measures TCP throughput, upload then download, against the
// target's host on rule.Port (default 9116, a `netops diag bandwidth-server`).
// Each direction runs for rule.Interval when set, else for a third of
// rule.Timeout up to 3s (2s without a timeout), shortened to fit ctx.
// Metrics: mbps (the lower direction, which thresholds apply to), mbps_up,
// mbps_down. Mode "netops".
//
// Port 5201, or a server that does not greet like netops, is measured with the
// iperf3 program when it is installed (iperf3 -c host -p port -J -t N, then
// with -R); Mode "iperf3". Without it the result is UNKNOWN.
func Bandwidth(ctx context.Context, t Target, rule config.Rule) Result {
	host := Host(t.Address)
	if host == "" {
		return Failf(Unknown, ReasonError, "bandwidth: target %q has no host", t.Address)
	}
	port := rule.Port
	if port == 0 {
		port = bandwidth.DefaultPort
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	d := bwTestLength(ctx, rule)

	if port == IPerf3Port {
		return bwIperf3(ctx, host, port, d, "")
	}
	up, err := bandwidth.Measure(ctx, addr, bandwidth.Upload, d)
	if errors.Is(err, bandwidth.ErrNotNetops) {
		// Probing an iperf3 server this way makes it drop the next client,
		// so iperf3 is only used on its own port, never guessed.
		return Failf(Unknown, ReasonError, "%v; for an iperf3 server use port %d, or run 'netops diag bandwidth-server' on %s", err, IPerf3Port, host)
	}
	if err != nil {
		return bwFail(err, addr)
	}
	down, err := bandwidth.Measure(ctx, addr, bandwidth.Download, d)
	if err != nil {
		return bwFail(err, addr)
	}
	return bwResult(addr, "netops", d, up, down)
}

// bwTestLength is how long each direction runs.
func bwTestLength(ctx context.Context, rule config.Rule) time.Duration {
	d := bwDefaultTest
	switch {
	case rule.Interval > 0:
		d = rule.Interval.D()
	case rule.Timeout > 0:
		d = min(rule.Timeout.D()/3, bwMaxTest)
	}
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, (time.Until(dl)-2*bwSlack)/2)
	}
	return max(d, bwMinTest)
}

func bwResult(addr, mode string, d time.Duration, up, down bandwidth.Measurement) Result {
	res := Result{Status: OK, Mode: mode, Details: BandwidthDetails{Server: addr, Up: up, Down: down}}
	res.AddMetric(MetricMbps, math.Min(up.Mbps, down.Mbps), "Mbps")
	res.AddMetric(MetricMbpsUp, up.Mbps, "Mbps")
	res.AddMetric(MetricMbpsDown, down.Mbps, "Mbps")
	res.Message = fmt.Sprintf("up %.1f Mbps, down %.1f Mbps (%s server %s, %s each way)",
		up.Mbps, down.Mbps, mode, addr, d.Round(time.Millisecond))
	return res
}

func bwFail(err error, addr string) Result {
	switch reason := Classify(err); {
	case errors.Is(err, bandwidth.ErrRejected):
		return Failf(Unknown, ReasonError, "%v", err)
	case reason == ReasonRefused:
		return Failf(Critical, reason, "no bandwidth server at %s (connection refused): start one there with 'netops diag bandwidth-server --listen %s'", addr, addr)
	default:
		return Failf(StatusFor(reason), reason, "%v", err)
	}
}

// bwIperf3 measures with the iperf3 program. why is set when the server was
// found not to be a netops server.
func bwIperf3(ctx context.Context, host string, port int, d time.Duration, why string) Result {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	path, err := exec.LookPath("iperf3")
	if err != nil {
		if why != "" {
			return Failf(Unknown, ReasonError, "%s; if it is an iperf3 server, install iperf3 (apt-get install iperf3) or run 'netops diag bandwidth-server' there", why)
		}
		return Failf(Unknown, ReasonError, "port %d is the iperf3 port but the iperf3 program is not installed (apt-get install iperf3); or run 'netops diag bandwidth-server' on %s and use port %d", port, host, bandwidth.DefaultPort)
	}
	if !bwSafeHost(host) {
		return Failf(Unknown, ReasonError, "bandwidth: %q is not a host name or IP address", host)
	}
	secs := max(1, int(math.Ceil(d.Seconds())))
	args := []string{"-c", host, "-p", strconv.Itoa(port), "-J", "-t", strconv.Itoa(secs)}
	// After a client that did not speak its protocol (our netops greeting
	// wait), iperf3 closes and reopens its listener: retry a refused connect.
	retries := 0
	if why != "" {
		retries = 3
	}
	up, err := bwRunIperf3(ctx, path, args, retries)
	if err == nil {
		var down bandwidth.Measurement
		down, err = bwRunIperf3(ctx, path, append(args, "-R"), retries)
		if err == nil {
			up.Direction, down.Direction = bandwidth.Upload, bandwidth.Download
			return bwResult(addr, "iperf3", time.Duration(secs)*time.Second, up, down)
		}
	}
	res := bwFail(err, addr)
	if why != "" {
		res.Status, res.Reason = Unknown, ReasonError
		res.Message = why + "; as an iperf3 server: " + res.Message
	}
	res.Mode = "iperf3"
	return res
}

// bwSafeHost reports whether host is an IP address or a DNS name, so that it
// cannot be mistaken for an option by iperf3.
func bwSafeHost(host string) bool {
	if host == "" || strings.HasPrefix(host, "-") {
		return false
	}
	if net.ParseIP(host) != nil {
		return true
	}
	for _, c := range host {
		if !(c == '.' || c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// iperf3Report is the part of `iperf3 -J` output netops reads.
type iperf3Report struct {
	Error string `json:"error"`
	End   struct {
		SumSent     iperf3Sum `json:"sum_sent"`
		SumReceived iperf3Sum `json:"sum_received"`
	} `json:"end"`
}

type iperf3Sum struct {
	Bytes         float64 `json:"bytes"`
	Seconds       float64 `json:"seconds"`
	BitsPerSecond float64 `json:"bits_per_second"`
}

// iperf3Error is a failure iperf3 reported in its JSON output.
type iperf3Error struct{ msg string }

func (e *iperf3Error) Error() string { return "iperf3: " + e.msg }

// Unwrap lets Classify see a refused connection.
func (e *iperf3Error) Unwrap() error {
	if strings.Contains(strings.ToLower(e.msg), "connection refused") {
		return syscall.ECONNREFUSED
	}
	return nil
}

// bwRunIperf3 runs iperf3 with args and returns what the receiver measured,
// trying again up to retries times, 250ms apart, when the server refused.
func bwRunIperf3(ctx context.Context, path string, args []string, retries int) (bandwidth.Measurement, error) {
	for attempt := 0; ; attempt++ {
		m, err := bwRunIperf3Once(ctx, path, args)
		if err == nil || attempt >= retries || Classify(err) != ReasonRefused {
			return m, err
		}
		select {
		case <-ctx.Done():
			return m, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func bwRunIperf3Once(ctx context.Context, path string, args []string) (bandwidth.Measurement, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return bandwidth.Measurement{}, fmt.Errorf("iperf3: %w", ctx.Err())
	}
	var rep iperf3Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		if runErr != nil {
			return bandwidth.Measurement{}, fmt.Errorf("iperf3: %w: %s", runErr, strings.TrimSpace(stderr.String()))
		}
		return bandwidth.Measurement{}, fmt.Errorf("iperf3: unreadable JSON output: %w", err)
	}
	if rep.Error != "" {
		return bandwidth.Measurement{}, &iperf3Error{msg: rep.Error}
	}
	if runErr != nil {
		return bandwidth.Measurement{}, fmt.Errorf("iperf3: %w", runErr)
	}
	s := rep.End.SumReceived
	if s.Seconds <= 0 {
		return bandwidth.Measurement{}, errors.New("iperf3: no result in its JSON output")
	}
	return bandwidth.Measurement{Bytes: int64(s.Bytes), Seconds: s.Seconds, Mbps: s.BitsPerSecond / 1e6}, nil
}
