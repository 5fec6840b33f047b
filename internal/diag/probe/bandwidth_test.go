package probe

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/diag/bandwidth"
)

// loopbackTarget is the target of the exec, bandwidth and traceroute tests.
var loopbackTarget = Target{Name: "lo", Type: config.TargetHost, Address: "127.0.0.1"}

// bwServer starts a netops bandwidth server on a free loopback port.
func bwServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&bandwidth.Server{}).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

func bwRule(port int) config.Rule {
	return config.Rule{Name: "bw", Check: config.CheckBandwidth, Port: port,
		Interval: config.Duration(300 * time.Millisecond), Timeout: config.Duration(30 * time.Second)}
}

func TestBandwidthProbeNetops(t *testing.T) {
	port := bwServer(t)
	res := Bandwidth(t.Context(), loopbackTarget, bwRule(port))
	if res.Status != OK || res.Mode != "netops" {
		t.Fatalf("got %v %q %s", res.Status, res.Mode, res.Message)
	}
	for _, name := range []string{MetricMbps, MetricMbpsUp, MetricMbpsDown} {
		if m, ok := res.Metric(name); !ok || m.Value <= 0 || m.Unit != "Mbps" {
			t.Errorf("metric %s = %+v, %v", name, m, ok)
		}
	}
	if res.Metrics[0].Name != MetricMbps {
		t.Errorf("first metric %q, want mbps (Nagios ranges apply to the first)", res.Metrics[0].Name)
	}
	d := res.Details.(BandwidthDetails)
	if d.Up.Direction != bandwidth.Upload || d.Down.Direction != bandwidth.Download || d.Server != "127.0.0.1:"+strconv.Itoa(port) {
		t.Errorf("details %+v", d)
	}
	t.Log(res.Message)

	// Thresholds apply to the lower direction.
	r := bwRule(port)
	r.Crit.Mbps = 1e9
	res = Bandwidth(t.Context(), loopbackTarget, r)
	ApplyThresholds(&res, r)
	if res.Status != Critical || res.Reason != ReasonThreshold {
		t.Errorf("crit 1e9 Mbps: %v %q %s", res.Status, res.Reason, res.Message)
	}
}

func TestBandwidthProbeRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	res := Bandwidth(t.Context(), loopbackTarget, bwRule(port))
	if res.Status != Critical || res.Reason != ReasonRefused || !strings.Contains(res.Message, "bandwidth-server") {
		t.Errorf("got %v %q %s", res.Status, res.Reason, res.Message)
	}
}

func TestBandwidthProbeContext(t *testing.T) {
	port := bwServer(t)
	r := bwRule(port)
	r.Interval = config.Duration(20 * time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := Bandwidth(ctx, loopbackTarget, r)
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("took %v with a 1.5s deadline", el)
	}
	// The test length shrinks to fit the deadline, so it still completes.
	if res.Status != OK {
		t.Errorf("got %v %q %s", res.Status, res.Reason, res.Message)
	}
}

func TestBandwidthTestLength(t *testing.T) {
	long := context.Background()
	for _, tc := range []struct {
		interval, timeout time.Duration
		want              time.Duration
	}{
		{0, 0, 2 * time.Second},
		{0, 30 * time.Second, 3 * time.Second},
		{0, 3 * time.Second, time.Second},
		{0, 30 * time.Millisecond, 100 * time.Millisecond},
		{500 * time.Millisecond, 30 * time.Second, 500 * time.Millisecond},
	} {
		r := config.Rule{Interval: config.Duration(tc.interval), Timeout: config.Duration(tc.timeout)}
		if got := bwTestLength(long, r); got != tc.want {
			t.Errorf("interval %v timeout %v: %v, want %v", tc.interval, tc.timeout, got, tc.want)
		}
	}
	ctx, cancel := context.WithTimeout(long, 3*time.Second)
	defer cancel()
	if got := bwTestLength(ctx, config.Rule{Timeout: config.Duration(30 * time.Second)}); got > time.Second {
		t.Errorf("3s deadline: %v per direction", got)
	}
}

func TestBandwidthNotNetopsWithoutIperf3(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no iperf3 here
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // a silent server, like iperf3
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = c.Read(make([]byte, 64)) }()
		}
	}()
	res := Bandwidth(t.Context(), loopbackTarget, bwRule(ln.Addr().(*net.TCPAddr).Port))
	if res.Status != Unknown || !strings.Contains(res.Message, "not a netops bandwidth server") || !strings.Contains(res.Message, "iperf3") {
		t.Errorf("got %v %q %s", res.Status, res.Reason, res.Message)
	}
	res = Bandwidth(t.Context(), loopbackTarget, bwRule(IPerf3Port))
	if res.Status != Unknown || !strings.Contains(res.Message, "iperf3 program is not installed") {
		t.Errorf("port 5201: got %v %q %s", res.Status, res.Reason, res.Message)
	}
}

// iperf3Server starts `iperf3 -s` on 127.0.0.1:port until the test ends.
func iperf3Server(t *testing.T, port int) {
	t.Helper()
	path, err := exec.LookPath("iperf3")
	if err != nil {
		t.Skip("iperf3 not installed (apt-get install iperf3)")
	}
	cmd := exec.Command(path, "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// Wait until the port is taken. Connecting to check would count as a
	// failed test, and iperf3 closes and reopens its listener after one.
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return
		}
		ln.Close()
		if time.Now().After(deadline) {
			t.Fatalf("iperf3 -s did not listen on %s", addr)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestBandwidthIperf3(t *testing.T) {
	check := func(t *testing.T, port int) {
		iperf3Server(t, port)
		r := bwRule(port)
		r.Interval = config.Duration(time.Second)
		res := Bandwidth(t.Context(), loopbackTarget, r)
		if res.Status != OK || res.Mode != "iperf3" {
			t.Fatalf("got %v %q %q %s", res.Status, res.Reason, res.Mode, res.Message)
		}
		for _, name := range []string{MetricMbps, MetricMbpsUp, MetricMbpsDown} {
			if m, ok := res.Metric(name); !ok || m.Value <= 0 {
				t.Errorf("metric %s = %+v, %v", name, m, ok)
			}
		}
		t.Log(res.Message)
	}
	t.Run("port5201", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:5201")
		if err != nil {
			t.Skipf("port 5201 in use: %v", err)
		}
		ln.Close()
		check(t, IPerf3Port)
	})
}
