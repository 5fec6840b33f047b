package probe

import (
	"context"
	"errors"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/config"
)

// icmpTestRule pings fast: loopback answers in microseconds.
func icmpTestRule() config.Rule {
	return config.Rule{Check: config.CheckICMP, Count: 3, Interval: config.Duration(20 * time.Millisecond),
		Timeout: config.Duration(time.Second)}
}

// icmpTestSkipNoPermission skips when this machine allows neither ICMP mode.
func icmpTestSkipNoPermission(t *testing.T, res Result) {
	t.Helper()
	if res.Status == Unknown && res.Reason == ReasonPermission {
		t.Skipf("no ICMP permission here (neither ping_group_range nor CAP_NET_RAW): %s", res.Message)
	}
}

func icmpTestMetric(t *testing.T, res Result, name string) float64 {
	t.Helper()
	m, ok := res.Metric(name)
	if !ok {
		t.Fatalf("metric %q missing in %+v", name, res.Metrics)
	}
	return m.Value
}

func TestICMPLoopback(t *testing.T) {
	tests := []struct {
		name, address, want string
	}{
		{"ipv4", "127.0.0.1", "127.0.0.1"},
		{"ipv6", "::1", "::1"},
		{"ipv6 bracketed", "[::1]", "::1"},
		{"host:port", "127.0.0.1:22", "127.0.0.1"},
		{"url", "http://127.0.0.1:8080/x", "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := ICMP(t.Context(), Target{Address: tt.address}, icmpTestRule())
			icmpTestSkipNoPermission(t, res)
			t.Logf("%s", res.Message)
			if res.Status != OK || res.Reason != "" {
				t.Fatalf("status %v reason %q: %s", res.Status, res.Reason, res.Message)
			}
			if res.Mode != ICMPModeUnprivileged && res.Mode != ICMPModeRaw {
				t.Errorf("mode %q", res.Mode)
			}
			if got := icmpTestMetric(t, res, MetricLoss); got != 0 {
				t.Errorf("loss %v%% on loopback", got)
			}
			if s, r := icmpTestMetric(t, res, "sent"), icmpTestMetric(t, res, "received"); s != 3 || r != 3 {
				t.Errorf("sent %v received %v, want 3 3", s, r)
			}
			lo, avg, hi := icmpTestMetric(t, res, "rtt_min"), icmpTestMetric(t, res, MetricRTT), icmpTestMetric(t, res, "rtt_max")
			if lo <= 0 || lo > avg || avg > hi || hi > 1 {
				t.Errorf("rtt min/avg/max %v/%v/%v not ordered or not plausible", lo, avg, hi)
			}
			if sd, j := icmpTestMetric(t, res, "rtt_stddev"), icmpTestMetric(t, res, "jitter"); sd < 0 || j < 0 || j > hi-lo+1e-9 {
				t.Errorf("stddev %v jitter %v", sd, j)
			}
			det, ok := res.Details.(ICMPDetails)
			if !ok || det.Address != tt.want || len(det.RTTs) != 3 {
				t.Errorf("details %+v", res.Details)
			}
			if !strings.Contains(res.Message, "3/3 replies from "+tt.want) {
				t.Errorf("message %q", res.Message)
			}
		})
	}
}

func TestICMPHostname(t *testing.T) {
	res := ICMP(t.Context(), Target{Address: "localhost"}, icmpTestRule())
	icmpTestSkipNoPermission(t, res)
	if res.Status != OK {
		t.Fatalf("localhost: %v %s: %s", res.Status, res.Reason, res.Message)
	}
}

func TestICMPResolveFailure(t *testing.T) {
	// .onion names never reach DNS in Go's resolver (RFC 7686): a failed
	// lookup without sending anything.
	tests := []struct {
		address string
		reasons []string
	}{
		{"netops-test.onion", []string{ReasonNXDomain, ReasonDNS}},
		{"", []string{ReasonError}},
	}
	for _, tt := range tests {
		t.Run(tt.address, func(t *testing.T) {
			for _, fn := range []Func{ICMP, Latency, Portscan, Discover} {
				res := fn(t.Context(), Target{Address: tt.address}, icmpTestRule())
				if res.Status != Critical || !slices.Contains(tt.reasons, res.Reason) {
					t.Errorf("%v %q: %s", res.Status, res.Reason, res.Message)
				}
			}
		})
	}
}

func TestLookupFailure(t *testing.T) {
	tests := []struct {
		err    error
		reason string
	}{
		{&net.DNSError{Err: "no such host", Name: "x.example", IsNotFound: true}, ReasonNXDomain},
		{&net.DNSError{Err: "i/o timeout", Name: "x.example", IsTimeout: true}, ReasonTimeout},
		{&net.DNSError{Err: "server misbehaving", Name: "x.example"}, ReasonDNS},
		{errors.New("no suitable address found"), ReasonDNS},
	}
	for _, tt := range tests {
		res := lookupFailure("x.example", tt.err)
		if res.Status != Critical || res.Reason != tt.reason || !strings.HasPrefix(res.Message, "cannot resolve x.example: ") {
			t.Errorf("%v: got %v %q %q", tt.err, res.Status, res.Reason, res.Message)
		}
	}
}

// TestICMPFailure covers what a user sees when ICMP is not allowed (running
// as root here, the real path cannot be reached) and other early failures.
func TestICMPFailure(t *testing.T) {
	eperm := &net.OpError{Op: "listen", Net: "ip4:icmp", Err: os.NewSyscallError("socket", syscall.EPERM)}
	eacces := &net.OpError{Op: "listen", Net: "udp4", Err: os.NewSyscallError("socket", syscall.EACCES)}
	tests := []struct {
		name       string
		err        error
		status     Status
		reason     string
		wantInMsgs []string
	}{
		{"both modes refused", &icmpPermissionError{unprivileged: eacces, raw: eperm}, Unknown, ReasonPermission,
			[]string{"cannot ping 192.0.2.1", "unprivileged socket", "permission denied", "raw socket",
				"operation not permitted", `sysctl -w net.ipv4.ping_group_range="0 2147483647"`,
				"setcap cap_net_raw+ep $(command -v netops)", "run as root"}},
		{"raw EPERM alone", eperm, Unknown, ReasonPermission, []string{"ping_group_range", "cap_net_raw", "root"}},
		{"wrapped EACCES", errors.Join(errors.New("icmp"), eacces), Unknown, ReasonPermission, []string{"setcap"}},
		{"no route", os.NewSyscallError("sendto", syscall.ENETUNREACH), Critical, ReasonUnreachable, []string{"network is unreachable"}},
		{"other", errors.New("boom"), Critical, ReasonError, []string{"boom"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := icmpFailure(tt.err, "192.0.2.1")
			if res.Status != tt.status || res.Reason != tt.reason {
				t.Fatalf("got %v %q, want %v %q: %s", res.Status, res.Reason, tt.status, tt.reason, res.Message)
			}
			for _, w := range tt.wantInMsgs {
				if !strings.Contains(res.Message, w) {
					t.Errorf("message %q lacks %q", res.Message, w)
				}
			}
			if strings.Contains(res.Message, "0% loss") || len(res.Metrics) > 0 {
				t.Errorf("a failure must not report measurements: %+v", res)
			}
		})
	}
}

func TestICMPTryRaw(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{os.NewSyscallError("socket", syscall.EACCES), true},
		{os.NewSyscallError("socket", syscall.EPERM), true},
		{os.NewSyscallError("socket", syscall.EPROTONOSUPPORT), true},
		{os.NewSyscallError("socket", syscall.EAFNOSUPPORT), true},
		{os.NewSyscallError("sendto", syscall.ENETUNREACH), false},
		{errors.New("size 8 is less than minimum required size 24"), false},
	}
	for _, tt := range tests {
		if got := icmpTryRaw(tt.err); got != tt.want {
			t.Errorf("icmpTryRaw(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestICMPResult(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	ms := time.Millisecond
	tests := []struct {
		name   string
		run    icmpRun
		err    error
		status Status
		reason string
		loss   float64
		msg    string
	}{
		{"all replies", icmpRun{mode: ICMPModeRaw, sent: 3, rtts: []time.Duration{ms, 2 * ms, 3 * ms}}, nil, OK, "", 0, "3/3 replies"},
		{"one lost", icmpRun{mode: ICMPModeRaw, sent: 3, rtts: []time.Duration{ms, 2 * ms}}, nil, OK, "", 100.0 / 3, "33.3% loss"},
		{"all lost", icmpRun{mode: ICMPModeRaw, sent: 3}, nil, Critical, ReasonLoss, 100, "no reply from 192.0.2.1: 3 sent, 0 received (100% loss)"},
		{"unreachable", icmpRun{mode: ICMPModeRaw, sent: 3, sendErr: os.NewSyscallError("sendto", syscall.EHOSTUNREACH)},
			nil, Critical, ReasonUnreachable, 100, "no route to host"},
		{"interrupted", icmpRun{mode: ICMPModeRaw, sent: 2, rtts: []time.Duration{ms}}, context.DeadlineExceeded, OK, "", 50, "stopped early"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := icmpResult(ip, tt.run, tt.err)
			if res.Status != tt.status || res.Reason != tt.reason || !strings.Contains(res.Message, tt.msg) {
				t.Fatalf("got %v %q %q", res.Status, res.Reason, res.Message)
			}
			if got := icmpTestMetric(t, res, MetricLoss); math.Abs(got-tt.loss) > 1e-9 {
				t.Errorf("loss %v, want %v", got, tt.loss)
			}
			if _, ok := res.Metric(MetricRTT); ok != (len(tt.run.rtts) > 0) {
				t.Errorf("rtt metric present = %v with %d replies", ok, len(tt.run.rtts))
			}
		})
	}
}

func TestICMPThresholdsApply(t *testing.T) {
	// The caller applies thresholds: a loopback rtt over 1ns is "slow".
	r := icmpTestRule()
	r.Crit.RTT = config.Duration(1)
	res := ICMP(t.Context(), Target{Address: "127.0.0.1"}, r)
	icmpTestSkipNoPermission(t, res)
	ApplyThresholds(&res, r)
	if res.Status != Critical || res.Reason != ReasonThreshold {
		t.Fatalf("%v %q: %s", res.Status, res.Reason, res.Message)
	}
}

func TestICMPOptionsFor(t *testing.T) {
	tests := []struct {
		name string
		r    config.Rule
		want icmpOptions
	}{
		{"defaults", config.Rule{}, icmpOptions{count: 3, interval: time.Second, size: 56, timeout: 2 * time.Second}},
		{"set", config.Rule{Count: 7, Interval: config.Duration(time.Millisecond), Size: 100, Timeout: config.Duration(time.Second)},
			icmpOptions{count: 7, interval: time.Millisecond, size: 100, timeout: time.Second}},
		{"tiny size raised", config.Rule{Size: 8}, icmpOptions{count: 3, interval: time.Second, size: icmpMinSize, timeout: 2 * time.Second}},
	}
	for _, tt := range tests {
		if got := icmpOptionsFor(tt.r, icmpDefaultCount, icmpDefaultInterval, icmpDefaultTimeout); got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestRTTStats(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name string
		in   []time.Duration
		want rttStats
	}{
		{"none", nil, rttStats{}},
		{"one", []time.Duration{5 * ms}, rttStats{min: 5 * ms, max: 5 * ms, avg: 5 * ms, p95: 5 * ms}},
		// mean 2.5, population stddev sqrt(1.25), jitter |2-1|,|4-2|,|3-4| = 4/3
		{"four", []time.Duration{ms, 2 * ms, 4 * ms, 3 * ms}, rttStats{min: ms, max: 4 * ms, avg: 2500 * time.Microsecond,
			stddev: time.Duration(math.Round(math.Sqrt(1.25) * float64(ms))), p95: 4 * ms,
			jitter: time.Duration(math.Round(4.0 / 3 * float64(ms)))}},
		// 20 samples 1..20ms: p95 is the 19th (nearest rank)
		{"p95", func() []time.Duration {
			var d []time.Duration
			for i := 20; i >= 1; i-- {
				d = append(d, time.Duration(i)*ms)
			}
			return d
		}(), rttStats{min: ms, max: 20 * ms, avg: 10500 * time.Microsecond,
			stddev: time.Duration(math.Round(math.Sqrt(33.25) * float64(ms))), p95: 19 * ms, jitter: ms}},
	}
	for _, tt := range tests {
		if got := rttStatsOf(tt.in); got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// TestICMPNoPermission runs the ICMP-using probes in a child process without
// CAP_NET_RAW (setpriv, as root). Where unprivileged ICMP is not allowed either
// (net.ipv4.ping_group_range), they must say so: ICMP and latency UNKNOWN with
// reason permission and the fixes, discover TCP-only and still finding hosts.
func TestICMPNoPermission(t *testing.T) {
	if os.Getenv("NETOPS_TEST_ICMP_NOPERM") == "1" {
		icmpTestNoPermissionChild(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop CAP_NET_RAW in a child (setpriv)")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	cmd := exec.CommandContext(t.Context(), setpriv, "--inh-caps=-net_raw", "--bounding-set=-net_raw",
		os.Args[0], "-test.run=^TestICMPNoPermission$", "-test.v", "-test.timeout=60s")
	cmd.Env = append(os.Environ(), "NETOPS_TEST_ICMP_NOPERM=1")
	out, err := cmd.CombinedOutput()
	switch {
	case err != nil:
		t.Fatalf("child without CAP_NET_RAW: %v\n%s", err, out)
	case strings.Contains(string(out), "--- SKIP"):
		t.Skipf("child without CAP_NET_RAW skipped:\n%s", out)
	case !strings.Contains(string(out), "--- PASS: TestICMPNoPermission"):
		t.Fatalf("child did not run the test:\n%s", out)
	}
}

func icmpTestNoPermissionChild(t *testing.T) {
	res := ICMP(t.Context(), Target{Address: "127.0.0.1"}, icmpTestRule())
	if res.Status == OK {
		t.Skipf("ICMP still works without CAP_NET_RAW (mode %s): ping_group_range allows it here", res.Mode)
	}
	for name, res := range map[string]Result{
		"icmp":    res,
		"latency": Latency(t.Context(), Target{Address: "::1"}, latencyTestRule(2)),
	} {
		t.Logf("%s: %v %s: %s", name, res.Status, res.Reason, res.Message)
		if res.Status != Unknown || res.Reason != ReasonPermission || len(res.Metrics) > 0 {
			t.Errorf("%s: %v %q %+v: %s", name, res.Status, res.Reason, res.Metrics, res.Message)
		}
		for _, fix := range []string{"ping_group_range", "setcap cap_net_raw+ep", "run as root"} {
			if !strings.Contains(res.Message, fix) {
				t.Errorf("%s: message %q lacks %q", name, res.Message, fix)
			}
		}
	}
	d := Discover(t.Context(), Target{Type: config.TargetNetwork, Address: "127.0.0.0/30"}, config.Rule{})
	t.Logf("discover: %v mode %q: %s", d.Status, d.Mode, d.Message)
	if d.Status != OK || d.Mode != "tcp-only (no ICMP permission)" {
		t.Errorf("discover: %v mode %q: %s", d.Status, d.Mode, d.Message)
	}
	if m, _ := d.Metric("alive"); m.Value != 2 {
		t.Errorf("discover found %v hosts without ICMP, want 2: %s", m.Value, d.Message)
	}
}
