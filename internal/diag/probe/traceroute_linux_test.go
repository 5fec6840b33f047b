package probe

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/icmp"

	"github.com/netops-dev/netops/internal/config"
)

// needRawICMP skips the test unless this process may open a raw ICMP socket
// for network ("ip4:icmp" or "ip6:ipv6-icmp").
func needRawICMP(t *testing.T, network, addr string) {
	t.Helper()
	c, err := icmp.ListenPacket(network, addr)
	if err != nil {
		t.Skipf("raw ICMP socket not permitted (%v): run as root or with CAP_NET_RAW", err)
	}
	c.Close()
}

func traceRule() config.Rule {
	return config.Rule{Name: "path", Check: config.CheckTraceroute, Count: 30, Timeout: config.Duration(30 * time.Second)}
}

func checkLoopbackTrace(t *testing.T, target string) {
	start := time.Now()
	res := Traceroute(t.Context(), Target{Name: "lo", Type: config.TargetHost, Address: target}, traceRule())
	el := time.Since(start)
	if res.Status != OK || res.Mode != TraceICMP {
		t.Fatalf("got %v %q %s", res.Status, res.Reason, res.Message)
	}
	d := res.Details.(TraceDetails)
	if !d.Reached || len(d.Hops) != 1 {
		t.Fatalf("details %+v", d)
	}
	h := d.Hops[0]
	if h.TTL != 1 || h.Address != target || h.Sent != TraceProbes || h.Received != TraceProbes || h.Loss != 0 ||
		h.Min <= 0 || h.Min > h.Avg || h.Avg > h.Max {
		t.Errorf("hop %+v", h)
	}
	for name, want := range map[string]float64{MetricHops: 1, MetricLoss: 0} {
		if m, ok := res.Metric(name); !ok || m.Value != want {
			t.Errorf("metric %s = %+v %v, want %v", name, m, ok, want)
		}
	}
	if m, ok := res.Metric(MetricRTT); !ok || m.Value <= 0 || m.Value != h.Avg || m.Unit != "s" {
		t.Errorf("rtt %+v %v", m, ok)
	}
	// Every round ends as soon as the destination answered: no 1s waits.
	if el > 900*time.Millisecond {
		t.Errorf("loopback trace took %v", el)
	}
	t.Logf("%s (%v)", res.Message, el)
}

func TestTracerouteLoopback(t *testing.T) {
	needRawICMP(t, "ip4:icmp", "0.0.0.0")
	checkLoopbackTrace(t, "127.0.0.1")
}

func TestTracerouteLoopbackIPv6(t *testing.T) {
	needRawICMP(t, "ip6:ipv6-icmp", "::")
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	checkLoopbackTrace(t, "::1")
}

func TestTracerouteConcurrent(t *testing.T) {
	needRawICMP(t, "ip4:icmp", "0.0.0.0")
	// Raw sockets see each other's replies; echo ids keep the traces apart.
	errs := make(chan string, 8)
	for range 8 {
		go func() {
			res := Traceroute(t.Context(), loopbackTarget, traceRule())
			d, _ := res.Details.(TraceDetails)
			if res.Status != OK || len(d.Hops) != 1 || d.Hops[0].Received != TraceProbes {
				errs <- res.Message
				return
			}
			errs <- ""
		}()
	}
	for range 8 {
		if msg := <-errs; msg != "" {
			t.Error(msg)
		}
	}
}

func TestTraceCancelled(t *testing.T) {
	needRawICMP(t, "ip4:icmp", "0.0.0.0")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Trace(ctx, netip.MustParseAddr("127.0.0.1"), TraceOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want canceled", err)
	}
	res := Traceroute(ctx, loopbackTarget, traceRule())
	if res.Status == OK {
		t.Errorf("cancelled trace OK: %s", res.Message)
	}
}

func TestTracerouteBadTarget(t *testing.T) {
	res := Traceroute(t.Context(), Target{Name: "x", Address: ""}, traceRule())
	if res.Status != Unknown {
		t.Errorf("empty address: %v %s", res.Status, res.Message)
	}
	// .onion names never reach DNS in Go's resolver (RFC 7686): a failed
	// lookup without sending a query anywhere.
	res = Traceroute(t.Context(), Target{Name: "x", Address: "netops-test.onion"}, traceRule())
	if res.Status != Critical || !strings.Contains(res.Message, "cannot resolve netops-test.onion") {
		t.Errorf("unknown host: %v %q %s", res.Status, res.Reason, res.Message)
	}
}

// TestTracerouteWithoutPermission runs the probe as user nobody in a helper
// process: no raw socket, so the trace falls back to UDP probes (Linux), and a
// forced ICMP trace fails with reason permission, never a fake path.
func TestTracerouteWithoutPermission(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a helper as another user")
	}
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755)
	}
	bin := filepath.Join(dir, "probe.test")
	copyExecutable(t, os.Args[0], bin)
	argv := execHelper("traceroute")
	cmd := exec.Command(bin, argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "GOCOVERDIR="+dir)
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("cannot run a helper as nobody: %v %s", err, out)
	}
	var got struct {
		Result     Result `json:"result"`
		ICMPReason string `json:"icmp_reason"`
		ICMPError  string `json:"icmp_error"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	if got.ICMPReason != ReasonPermission {
		t.Errorf("raw ICMP as nobody: reason %q (%s), want permission", got.ICMPReason, got.ICMPError)
	}
	res := got.Result
	if res.Status != OK || res.Mode != TraceUDP {
		t.Errorf("as nobody: got %v %q mode %q: %s", res.Status, res.Reason, res.Mode, res.Message)
	}
	t.Logf("as nobody: %s (mode %s)", res.Message, res.Mode)
}

func TestTraceUDPLoopback(t *testing.T) {
	for _, a := range []string{"127.0.0.1", "::1"} {
		if a == "::1" {
			if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
				t.Logf("no IPv6 loopback: %v", err)
				continue
			} else {
				ln.Close()
			}
		}
		d, err := Trace(t.Context(), netip.MustParseAddr(a), TraceOptions{Mode: TraceUDP})
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if d.Mode != TraceUDP || !d.Reached || len(d.Hops) != 1 {
			t.Fatalf("%s: %+v", a, d)
		}
		if h := d.Hops[0]; h.Address != a || h.Sent != TraceProbes || h.Received != TraceProbes || h.Min <= 0 {
			t.Errorf("%s: hop %+v", a, h)
		}
	}
}

func TestTraceUnknownMode(t *testing.T) {
	if _, err := Trace(t.Context(), netip.MustParseAddr("127.0.0.1"), TraceOptions{Mode: "tcp"}); err == nil {
		t.Error("mode tcp accepted")
	}
}

func copyExecutable(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTraceInner(t *testing.T) {
	dst4 := netip.MustParseAddr("192.0.2.7")
	echo := func(typ byte, id, seq uint16) []byte {
		b := []byte{typ, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint16(b[4:], id)
		binary.BigEndian.PutUint16(b[6:], seq)
		return b
	}
	ip4 := func(proto byte, dst netip.Addr, ihl int) []byte {
		h := make([]byte, ihl)
		h[0] = 0x40 | byte(ihl/4)
		h[9] = proto
		copy(h[16:20], dst.AsSlice())
		return h
	}
	if got := traceInner(append(ip4(1, dst4, 20), echo(8, 77, 0x0203)...), false, dst4, 77); got != 0x0203 {
		t.Errorf("v4: %d", got)
	}
	if got := traceInner(append(ip4(1, dst4, 24), echo(8, 77, 5)...), false, dst4, 77); got != 5 {
		t.Errorf("v4 with options: %d", got)
	}
	for name, data := range map[string][]byte{
		"other id":    append(ip4(1, dst4, 20), echo(8, 78, 5)...),
		"other dst":   append(ip4(1, netip.MustParseAddr("192.0.2.8"), 20), echo(8, 77, 5)...),
		"udp":         append(ip4(17, dst4, 20), echo(8, 77, 5)...),
		"echo reply":  append(ip4(1, dst4, 20), echo(0, 77, 5)...),
		"short":       ip4(1, dst4, 20),
		"empty":       nil,
		"bad version": append(append([]byte{0x65}, ip4(1, dst4, 20)[1:]...), echo(8, 77, 5)...),
	} {
		if got := traceInner(data, false, dst4, 77); got != -1 {
			t.Errorf("%s: %d, want -1", name, got)
		}
	}
	dst6 := netip.MustParseAddr("2001:db8::7")
	h6 := make([]byte, 40)
	h6[0], h6[6] = 0x60, 58
	copy(h6[24:40], dst6.AsSlice())
	if got := traceInner(append(h6, echo(128, 9, 300)...), true, dst6, 9); got != 300 {
		t.Errorf("v6: %d", got)
	}
	if got := traceInner(append(h6, echo(129, 9, 300)...), true, dst6, 9); got != -1 {
		t.Errorf("v6 echo reply: %d", got)
	}
	if traceUnreachKind(false, 3) != "port" || traceUnreachKind(true, 1) != "prohibited" || traceUnreachKind(false, 99) != "code 99" {
		t.Error("unreachable kinds")
	}
}

// silenceUDPProbes binds UDP sockets on 127.0.0.1 to the ports the first
// round of UDP probes with ttl 1..hops goes to, so the destination never
// answers "port unreachable": a destination that does not answer, on loopback.
func silenceUDPProbes(t *testing.T, hops int) {
	t.Helper()
	for ttl := 1; ttl <= hops; ttl++ {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: traceUDPBasePort + ttl})
		if err != nil {
			t.Skipf("probe port in use: %v", err)
		}
		t.Cleanup(func() { c.Close() })
	}
}

func TestTraceNotReached(t *testing.T) {
	silenceUDPProbes(t, 2)
	dst := netip.MustParseAddr("127.0.0.1")
	opts := TraceOptions{Mode: TraceUDP, MaxHops: 2, Probes: 1, Wait: 200 * time.Millisecond}
	start := time.Now()
	d, err := Trace(t.Context(), dst, opts)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("took %v for one round of 200ms", el)
	}
	if d.Reached || len(d.Hops) != 0 {
		t.Fatalf("details %+v", d)
	}
	res := traceResult(t.Context(), dst, d, err, 2)
	if res.Status != Critical || res.Reason != ReasonUnreachable || res.Message != "127.0.0.1 not reached: no hop answered within 2 hops" {
		t.Errorf("got %v %q %q", res.Status, res.Reason, res.Message)
	}
	if m, ok := res.Metric(MetricLoss); !ok || m.Value != 100 {
		t.Errorf("loss %+v", m)
	}
	if _, ok := res.Metric(MetricRTT); ok {
		t.Error("rtt reported for an unreached destination")
	}
}

func TestTraceTimeout(t *testing.T) {
	silenceUDPProbes(t, 2)
	dst := netip.MustParseAddr("127.0.0.1")
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	d, err := Trace(ctx, dst, TraceOptions{Mode: TraceUDP, MaxHops: 2, Wait: 10 * time.Second})
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("took %v with a 300ms deadline", el)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	res := traceResult(ctx, dst, d, err, 2)
	if res.Status != Critical || res.Reason != ReasonTimeout || !strings.HasSuffix(res.Message, "before the timeout") {
		t.Errorf("got %v %q %q", res.Status, res.Reason, res.Message)
	}
}
