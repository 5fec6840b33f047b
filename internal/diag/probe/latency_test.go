package probe

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/config"
)

// latencyTestListener is a TCP server on a loopback address that accepts and
// closes every connection; it returns its port.
func latencyTestListener(t *testing.T, network, addr string) int {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func latencyTestRule(count int) config.Rule {
	return config.Rule{Check: config.CheckLatency, Count: count, Interval: config.Duration(5 * time.Millisecond),
		Timeout: config.Duration(time.Second)}
}

func TestLatencyTCP(t *testing.T) {
	p4 := latencyTestListener(t, "tcp4", "127.0.0.1:0")
	p6 := latencyTestListener(t, "tcp6", "[::1]:0")
	tests := []struct {
		name    string
		address string
		port    int
		count   int
		want    string
	}{
		{"rule port", "127.0.0.1", p4, 5, "127.0.0.1:" + strconv.Itoa(p4)},
		{"address port", "127.0.0.1:" + strconv.Itoa(p4), 0, 3, "127.0.0.1:" + strconv.Itoa(p4)},
		{"url port", "http://127.0.0.1:" + strconv.Itoa(p4) + "/health", 0, 2, "127.0.0.1:" + strconv.Itoa(p4)},
		{"ipv6", "::1", p6, 4, "[::1]:" + strconv.Itoa(p6)},
		{"default count", "127.0.0.1", p4, 0, "127.0.0.1:" + strconv.Itoa(p4)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := latencyTestRule(tt.count)
			r.Port = tt.port
			res := Latency(t.Context(), Target{Address: tt.address}, r)
			if res.Status != OK || res.Mode != LatencyModeTCP {
				t.Fatalf("%v %q mode %q: %s", res.Status, res.Reason, res.Mode, res.Message)
			}
			want := tt.count
			if want == 0 {
				want = latencyDefaultCount
			}
			det, ok := res.Details.(LatencyDetails)
			if !ok || det.Address != tt.want || det.Sent != want || len(det.Samples) != want {
				t.Fatalf("details %+v, want %d samples to %s", res.Details, want, tt.want)
			}
			for _, name := range []string{MetricRTT, "rtt_min", "rtt_max", "rtt_stddev", "rtt_p95", MetricLoss} {
				if _, ok := res.Metric(name); !ok {
					t.Errorf("metric %s missing", name)
				}
			}
			lo, _ := res.Metric("rtt_min")
			avg, _ := res.Metric(MetricRTT)
			p95, _ := res.Metric("rtt_p95")
			hi, _ := res.Metric("rtt_max")
			if lo.Value <= 0 || lo.Value > avg.Value || avg.Value > hi.Value || p95.Value > hi.Value || p95.Value < lo.Value {
				t.Errorf("min/avg/p95/max %v/%v/%v/%v", lo.Value, avg.Value, p95.Value, hi.Value)
			}
			if loss, _ := res.Metric(MetricLoss); loss.Value != 0 {
				t.Errorf("loss %v", loss.Value)
			}
		})
	}
}

func TestLatencyTCPRefused(t *testing.T) {
	// A port that was just closed: connects are refused.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := latencyTestRule(3)
	r.Port = port
	res := Latency(t.Context(), Target{Address: "127.0.0.1"}, r)
	if res.Status != Critical || res.Reason != ReasonRefused || res.Mode != LatencyModeTCP {
		t.Fatalf("%v %q mode %q: %s", res.Status, res.Reason, res.Mode, res.Message)
	}
	if loss, _ := res.Metric(MetricLoss); loss.Value != 100 {
		t.Errorf("loss %v, want 100", loss.Value)
	}
	if _, ok := res.Metric(MetricRTT); ok {
		t.Error("an rtt metric without any answer")
	}
	if !strings.Contains(res.Message, "none answered") || !strings.Contains(res.Message, "refused") {
		t.Errorf("message %q", res.Message)
	}
}

func TestLatencyICMP(t *testing.T) {
	for _, addr := range []string{"127.0.0.1", "::1"} {
		t.Run(addr, func(t *testing.T) {
			res := Latency(t.Context(), Target{Address: addr}, latencyTestRule(4))
			icmpTestSkipNoPermission(t, res)
			if res.Status != OK || res.Mode != LatencyModeICMP {
				t.Fatalf("%v %q mode %q: %s", res.Status, res.Reason, res.Mode, res.Message)
			}
			det := res.Details.(LatencyDetails)
			if det.Sent != 4 || len(det.Samples) != 4 || (det.ICMPMode != ICMPModeRaw && det.ICMPMode != ICMPModeUnprivileged) {
				t.Errorf("details %+v", det)
			}
			if _, ok := res.Metric("rtt_p95"); !ok {
				t.Error("rtt_p95 missing")
			}
		})
	}
}

func TestLatencyCancelled(t *testing.T) {
	port := latencyTestListener(t, "tcp4", "127.0.0.1:0")
	r := latencyTestRule(1000)
	r.Interval = config.Duration(time.Second)
	r.Port = port
	// 1000 probes a second apart would take 17 minutes: the deadline stops
	// them and what was measured is reported.
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	res := Latency(ctx, Target{Address: "127.0.0.1"}, r)
	if time.Since(start) > 5*time.Second {
		t.Fatalf("took %v", time.Since(start))
	}
	det := res.Details.(LatencyDetails)
	if res.Status != OK || det.Sent != 1 {
		t.Fatalf("%v %q: %s (%+v)", res.Status, res.Reason, res.Message, det)
	}
}
