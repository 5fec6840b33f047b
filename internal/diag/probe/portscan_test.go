package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/config"
)

// scanTestOpen starts n listeners on addr (a loopback IP) and returns their
// ports, sorted.
func scanTestOpen(t *testing.T, addr string, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ports = append(ports, latencyTestListener(t, "tcp", net.JoinHostPort(addr, "0")))
	}
	slices.Sort(ports)
	return ports
}

// scanTestClosed returns n ports of addr that are closed, and held so
// until the test ends (see holdClosed): a connect gets a reset.
func scanTestClosed(t *testing.T, addr string, n int) []int {
	t.Helper()
	var ports []int
	for try := 0; len(ports) < n; try++ {
		if try == 20*n {
			t.Fatalf("no closed port held on %s in %d tries", addr, try)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if holdClosed(t, addr, port) {
			ports = append(ports, port)
		}
	}
	slices.Sort(ports)
	return ports
}

// scanTestSpec writes ports as a port list.
func scanTestSpec(ports ...[]int) config.PortSpec {
	var items []string
	for _, list := range ports {
		for _, p := range list {
			items = append(items, strconv.Itoa(p))
		}
	}
	return config.PortSpec(strings.Join(items, ","))
}

func scanTestDetails(t *testing.T, res Result) PortscanDetails {
	t.Helper()
	det, ok := res.Details.(PortscanDetails)
	if !ok {
		t.Fatalf("details %T %+v (%v %s: %s)", res.Details, res.Details, res.Status, res.Reason, res.Message)
	}
	return det
}

func TestPortscanLoopback(t *testing.T) {
	open := scanTestOpen(t, "127.0.0.1", 3)
	closed := scanTestClosed(t, "127.0.0.1", 3)
	all := append(slices.Clone(open), closed...)
	slices.Sort(all)
	tests := []struct {
		name       string
		rule       config.Rule
		status     Status
		reason     string
		wantOpen   []int
		wantClosed int
		msg        []string
	}{
		{"list open ports", config.Rule{Ports: scanTestSpec(open, closed)}, OK, "", open, 3,
			[]string{"6 ports scanned on 127.0.0.1", "3 open, 3 closed, 0 filtered", "open: " + strings.Trim(strings.Join(strings.Fields(fmt.Sprint(open)), ", "), "[]")}},
		{"range", config.Rule{Ports: config.PortSpec(fmt.Sprintf("%d-%d", all[0], all[len(all)-1]))}, OK, "", open, -1, nil},
		{"expect open ok", config.Rule{ExpectOpen: scanTestSpec(open)}, OK, "", open, 0, nil},
		{"expect open but closed", config.Rule{Ports: scanTestSpec(open), ExpectOpen: scanTestSpec(closed[:1])}, Critical, ReasonMismatch, open, 1,
			[]string{fmt.Sprintf("port %d is closed but expected open", closed[0])}},
		{"must be closed ok", config.Rule{Ports: scanTestSpec(open), MustBeClosed: scanTestSpec(closed)}, OK, "", open, 3, nil},
		{"must be closed but open", config.Rule{MustBeClosed: scanTestSpec(open[1:2], closed)}, Critical, ReasonPolicy, open[1:2], 3,
			[]string{fmt.Sprintf("port %d is open but must be closed", open[1])}},
		{"policy before mismatch", config.Rule{ExpectOpen: scanTestSpec(closed[:1]), MustBeClosed: scanTestSpec(open[:1])}, Critical, ReasonPolicy, open[:1], 1,
			[]string{fmt.Sprintf("port %d is open but must be closed", open[0]), fmt.Sprintf("port %d is closed but expected open", closed[0])}},
		{"single port field", config.Rule{Port: open[2]}, OK, "", open[2:], 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Portscan(t.Context(), Target{Type: config.TargetHost, Address: "127.0.0.1"}, tt.rule)
			if res.Status != tt.status || res.Reason != tt.reason {
				t.Fatalf("got %v %q, want %v %q: %s", res.Status, res.Reason, tt.status, tt.reason, res.Message)
			}
			det := scanTestDetails(t, res)
			var gotOpen []int
			for _, h := range det.Open {
				if h.Address != "127.0.0.1" {
					t.Errorf("open port on %s", h.Address)
				}
				gotOpen = append(gotOpen, h.Ports...)
			}
			// A range may cover ports other processes listen on: only ours
			// are checked there.
			if tt.wantClosed >= 0 && !slices.Equal(gotOpen, tt.wantOpen) {
				t.Errorf("open %v, want %v", gotOpen, tt.wantOpen)
			}
			for _, p := range tt.wantOpen {
				if !slices.Contains(gotOpen, p) {
					t.Errorf("port %d not found open in %v", p, gotOpen)
				}
			}
			if tt.wantClosed >= 0 && det.Counts.Closed != tt.wantClosed {
				t.Errorf("closed %d, want %d", det.Counts.Closed, tt.wantClosed)
			}
			if det.Counts.Filtered != 0 || det.HostsScanned != 1 {
				t.Errorf("counts %+v hosts %d", det.Counts, det.HostsScanned)
			}
			if m, _ := res.Metric("open"); int(m.Value) != det.Counts.Open {
				t.Errorf("metric open %v, counts %+v", m.Value, det.Counts)
			}
			if _, ok := res.Metric("scan_time"); !ok {
				t.Error("scan_time missing")
			}
			if _, ok := res.Metric(MetricRTT); ok {
				t.Error("portscan must not emit rtt")
			}
			for _, w := range tt.msg {
				if !strings.Contains(res.Message, w) {
					t.Errorf("message %q lacks %q", res.Message, w)
				}
			}
		})
	}
}

func TestPortscanIPv6(t *testing.T) {
	open := scanTestOpen(t, "::1", 1)
	closed := scanTestClosed(t, "::1", 1)
	res := Portscan(t.Context(), Target{Address: "::1"}, config.Rule{Ports: scanTestSpec(open, closed)})
	det := scanTestDetails(t, res)
	if res.Status != OK || len(det.Open) != 1 || det.Open[0].Address != "::1" || !slices.Equal(det.Open[0].Ports, open) ||
		det.Counts.Closed != 1 {
		t.Fatalf("%v %s: %+v", res.Status, res.Message, det)
	}
}

// holdClosed binds a TCP socket to ip:port without listening on it, until
// the test ends: a connect there gets a reset, and no other process (a test
// of another package running meanwhile) can listen there. It reports false
// when the port is taken.
func holdClosed(t *testing.T, ip string, port int) bool {
	t.Helper()
	a := netip.MustParseAddr(ip)
	family := syscall.AF_INET6
	var sa syscall.Sockaddr = &syscall.SockaddrInet6{Port: port, Addr: a.As16()}
	if a.Is4() {
		family = syscall.AF_INET
		sa = &syscall.SockaddrInet4{Port: port, Addr: a.As4()}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return false
	}
	t.Cleanup(func() { syscall.Close(fd) })
	return true
}

// TestPortscanNetwork scans 127.0.0.0/30: 127.0.0.1 and 127.0.0.2 (network
// and broadcast addresses skipped); a listener on 127.0.0.2 only is open
// there and closed on 127.0.0.1 (held closed: free on one address says
// nothing of the other).
func TestPortscanNetwork(t *testing.T) {
	var open []int
	for try := 0; ; try++ {
		open = scanTestOpen(t, "127.0.0.2", 1)
		if holdClosed(t, "127.0.0.1", open[0]) {
			break
		}
		if try == 20 {
			t.Fatalf("no port free on both 127.0.0.1 and 127.0.0.2 in %d tries", try+1)
		}
	}
	tests := []struct {
		name   string
		rule   config.Rule
		status Status
		reason string
		msg    string
	}{
		{"list", config.Rule{Ports: scanTestSpec(open)}, OK, "", fmt.Sprintf("open: 127.0.0.2 %d", open[0])},
		{"must be closed", config.Rule{MustBeClosed: scanTestSpec(open)}, Critical, ReasonPolicy,
			fmt.Sprintf("port %d is open on 127.0.0.2 but must be closed", open[0])},
		{"expect open everywhere", config.Rule{ExpectOpen: scanTestSpec(open)}, Critical, ReasonMismatch,
			fmt.Sprintf("port %d is closed on 127.0.0.1 but expected open", open[0])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Portscan(t.Context(), Target{Type: config.TargetNetwork, Address: "127.0.0.0/30"}, tt.rule)
			if res.Status != tt.status || res.Reason != tt.reason || !strings.Contains(res.Message, tt.msg) {
				t.Fatalf("got %v %q %q", res.Status, res.Reason, res.Message)
			}
			det := scanTestDetails(t, res)
			want := []PortscanHost{{Address: "127.0.0.2", Ports: open}}
			if det.Network != "127.0.0.0/30" || det.HostsScanned != 2 || det.Counts != (PortscanCounts{Open: 1, Closed: 1}) ||
				len(det.Open) != 1 || det.Open[0].Address != want[0].Address || !slices.Equal(det.Open[0].Ports, open) {
				t.Errorf("details %+v", det)
			}
		})
	}
}

func TestPortscanMaxHosts(t *testing.T) {
	tests := []struct {
		address  string
		maxHosts int
		status   Status
		msg      string
	}{
		{"127.0.0.0/16", 0, Unknown, "127.0.0.0/16 has 65536 addresses, more than max_hosts 256; raise max_hosts to scan it"},
		{"127.0.0.0/24", 100, Unknown, "127.0.0.0/24 has 256 addresses, more than max_hosts 100; raise max_hosts to scan it"},
		{"::/0", 0, Unknown, "::/0 has 2^128 addresses"},
		{"127.0.0.0/23", 512, OK, "2 ports scanned on 510 hosts of 127.0.0.0/23"},
	}
	closed := scanTestClosed(t, "127.0.0.1", 2)
	for _, tt := range tests {
		t.Run(tt.address, func(t *testing.T) {
			res := Portscan(t.Context(), Target{Type: config.TargetNetwork, Address: tt.address},
				config.Rule{Ports: scanTestSpec(closed), MaxHosts: tt.maxHosts})
			if res.Status != tt.status || !strings.Contains(res.Message, tt.msg) {
				t.Fatalf("%v %q: %s", res.Status, res.Reason, res.Message)
			}
			if tt.status == Unknown && res.Reason != ReasonError {
				t.Errorf("reason %q", res.Reason)
			}
		})
	}
}

func TestPortscanBadInput(t *testing.T) {
	tests := []struct {
		name string
		t    Target
		r    config.Rule
		msg  string
	}{
		{"bad ports", Target{Address: "127.0.0.1"}, config.Rule{Ports: "1-70000"}, "ports: invalid port range"},
		{"bad must_be_closed", Target{Address: "127.0.0.1"}, config.Rule{MustBeClosed: "x"}, "must_be_closed: invalid port"},
		{"network not a CIDR", Target{Type: config.TargetNetwork, Address: "127.0.0.1"}, config.Rule{Port: 22}, "not a CIDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Portscan(t.Context(), tt.t, tt.r)
			if res.Status != Unknown || res.Reason != ReasonError || !strings.Contains(res.Message, tt.msg) {
				t.Fatalf("%v %q: %s", res.Status, res.Reason, res.Message)
			}
		})
	}
}

// TestPortscanInjected drives the scanner with a dial function that fails the
// way the kernel does, for what loopback cannot produce on demand.
func TestPortscanInjected(t *testing.T) {
	emfile := os.NewSyscallError("socket", syscall.EMFILE)
	tests := []struct {
		name      string
		dial      func(calls int64) error // calls counts from 1
		retries   int
		status    Status
		reason    string
		counts    PortscanCounts
		wantCalls int64 // 0: do not check
		msg       string
	}{
		{"EMFILE persists: scanner error", func(int64) error { return emfile }, 0, Unknown, ReasonResource, PortscanCounts{}, 0,
			"scanner error, not a port state"},
		{"EADDRNOTAVAIL persists", func(int64) error { return os.NewSyscallError("connect", syscall.EADDRNOTAVAIL) }, 0,
			Unknown, ReasonResource, PortscanCounts{}, 0, "cannot assign requested address"},
		{"ENOBUFS then fine", func(n int64) error {
			if n <= 2 {
				return os.NewSyscallError("connect", syscall.ENOBUFS)
			}
			return os.NewSyscallError("connect", syscall.ECONNREFUSED)
		}, 0, OK, "", PortscanCounts{Closed: 1}, 3, "1 closed"},
		{"filtered after retries", func(int64) error { return fmt.Errorf("connect: %w", os.ErrDeadlineExceeded) }, 2,
			OK, "", PortscanCounts{Filtered: 1}, 3, "1 filtered"},
		{"filtered then open on retry", func(n int64) error {
			if n == 1 {
				return fmt.Errorf("connect: %w", os.ErrDeadlineExceeded)
			}
			return nil
		}, 1, OK, "", PortscanCounts{Open: 1}, 2, "1 open"},
		{"unreachable is filtered", func(int64) error { return os.NewSyscallError("connect", syscall.EHOSTUNREACH) }, 0,
			OK, "", PortscanCounts{Filtered: 1}, 1, ""},
		{"unknown error is a scanner error", func(int64) error { return os.NewSyscallError("connect", syscall.EINVAL) }, 0,
			Unknown, ReasonError, PortscanCounts{}, 1, "invalid argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int64
			res := portscanRun(t.Context(), Target{Address: "127.0.0.1"}, config.Rule{Port: 9, Retries: tt.retries},
				func(s *portScanner) {
					s.resourceBackoff = time.Millisecond
					s.dial = func(context.Context, netip.AddrPort) error { return tt.dial(calls.Add(1)) }
				})
			if res.Status != tt.status || res.Reason != tt.reason || !strings.Contains(res.Message, tt.msg) {
				t.Fatalf("got %v %q, want %v %q: %s", res.Status, res.Reason, tt.status, tt.reason, res.Message)
			}
			if tt.status == OK {
				if det := scanTestDetails(t, res); det.Counts != tt.counts {
					t.Errorf("counts %+v, want %+v", det.Counts, tt.counts)
				}
			} else if res.Details != nil || strings.Contains(res.Message, "filtered") || strings.Contains(res.Message, "closed,") {
				t.Errorf("a scanner error must not report port states: %+v", res)
			}
			if tt.wantCalls > 0 && calls.Load() != tt.wantCalls {
				t.Errorf("%d dials, want %d", calls.Load(), tt.wantCalls)
			}
			if tt.reason == ReasonResource && calls.Load() != scanResourceRetries+1 {
				t.Errorf("%d dials, want %d (1 + retries)", calls.Load(), scanResourceRetries+1)
			}
		})
	}
}

func TestPortscanCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	res := Portscan(ctx, Target{Address: "127.0.0.1"}, config.Rule{Ports: "1-1000"})
	if res.Status != Unknown || res.Reason != ReasonTimeout || !strings.Contains(res.Message, "scan interrupted") {
		t.Fatalf("%v %q: %s", res.Status, res.Reason, res.Message)
	}
}

func TestScanPortsOf(t *testing.T) {
	tests := []struct {
		name               string
		r                  config.Rule
		n                  int
		has                []uint16
		expectOpen, closed []int
	}{
		{"default top100", config.Rule{}, 100, []uint16{22, 80, 443, 3389, 8080}, nil, nil},
		{"top1000", config.Rule{Ports: "top1000"}, 1000, []uint16{1, 22, 65389}, nil, nil},
		{"union sorted", config.Rule{Ports: "443,22", Port: 80, ExpectOpen: "22,8080", MustBeClosed: "23"}, 5,
			[]uint16{22, 23, 80, 443, 8080}, []int{22, 8080}, []int{23}},
		{"overlap counted once", config.Rule{Ports: "1-10,5-15,top100"}, 15 + 100 - 3, []uint16{1, 15, 49157}, nil, nil},
		{"full", config.Rule{Ports: "1-65535"}, 65535, []uint16{1, 65535}, nil, nil},
		{"assertions only", config.Rule{MustBeClosed: "23,2323"}, 2, []uint16{23, 2323}, nil, []int{23, 2323}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ports, eo, mc, err := scanPortsOf(tt.r)
			if err != nil {
				t.Fatal(err)
			}
			if len(ports) != tt.n || !slices.IsSorted(ports) {
				t.Errorf("%d ports (sorted %v), want %d", len(ports), slices.IsSorted(ports), tt.n)
			}
			for _, p := range tt.has {
				if !slices.Contains(ports, p) {
					t.Errorf("port %d missing", p)
				}
			}
			if !slices.Equal(eo, tt.expectOpen) || !slices.Equal(mc, tt.closed) {
				t.Errorf("expect_open %v must_be_closed %v", eo, mc)
			}
		})
	}
}

func TestScanHostsOf(t *testing.T) {
	tests := []struct {
		address, typ string
		max          int
		want         []string
		network      string
		fail         string
	}{
		{"127.0.0.0/30", config.TargetNetwork, 0, []string{"127.0.0.1", "127.0.0.2"}, "127.0.0.0/30", ""},
		{"127.0.0.5/29", config.TargetNetwork, 0, []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"}, "127.0.0.0/29", ""},
		{"127.0.0.0/31", config.TargetNetwork, 0, []string{"127.0.0.0", "127.0.0.1"}, "127.0.0.0/31", ""},
		{"127.0.0.9/32", config.TargetNetwork, 0, []string{"127.0.0.9"}, "127.0.0.9/32", ""},
		{"::1/128", config.TargetNetwork, 0, []string{"::1"}, "::1/128", ""},
		{"::/126", config.TargetNetwork, 0, []string{"::", "::1", "::2", "::3"}, "::/126", ""},
		{"127.0.0.1", config.TargetHost, 0, []string{"127.0.0.1"}, "", ""},
		{"127.0.0.1:8080", config.TargetService, 0, []string{"127.0.0.1"}, "", ""},
		{"127.0.0.0/24", config.TargetNetwork, 255, nil, "", "127.0.0.0/24 has 256 addresses, more than max_hosts 255; raise max_hosts to scan it"},
		{"127.0.0.0/24", config.TargetNetwork, 256, nil, "127.0.0.0/24", ""},
	}
	for _, tt := range tests {
		t.Run(tt.address, func(t *testing.T) {
			hosts, network, fail, ok := scanHostsOf(t.Context(), Target{Type: tt.typ, Address: tt.address}, tt.max)
			if tt.fail != "" {
				if ok || fail.Message != tt.fail || fail.Status != Unknown || fail.Reason != ReasonError {
					t.Fatalf("got ok=%v %+v", ok, fail)
				}
				return
			}
			if !ok || network != tt.network {
				t.Fatalf("ok=%v network %q: %+v", ok, network, fail)
			}
			if tt.want == nil {
				if len(hosts) != 254 {
					t.Errorf("%d hosts", len(hosts))
				}
				return
			}
			var got []string
			for _, h := range hosts {
				got = append(got, h.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("hosts %v, want %v", got, tt.want)
			}
		})
	}
}

func TestScanConnectTCP(t *testing.T) {
	open4 := scanTestOpen(t, "127.0.0.1", 1)[0]
	closed4 := scanTestClosed(t, "127.0.0.1", 1)[0]
	open6 := scanTestOpen(t, "::1", 1)[0]
	closed6 := scanTestClosed(t, "::1", 1)[0]
	tests := []struct {
		ap      netip.AddrPort
		refused bool
	}{
		{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(open4)), false},
		{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(closed4)), true},
		{netip.AddrPortFrom(netip.MustParseAddr("::1"), uint16(open6)), false},
		{netip.AddrPortFrom(netip.MustParseAddr("::1"), uint16(closed6)), true},
		{netip.AddrPortFrom(netip.MustParseAddr("::ffff:127.0.0.1"), uint16(open4)), false},
	}
	for _, tt := range tests {
		err := scanConnectTCP(t.Context(), tt.ap, time.Second)
		if tt.refused != errors.Is(err, syscall.ECONNREFUSED) || (!tt.refused && err != nil) {
			t.Errorf("%s: %v", tt.ap, err)
		}
	}
}

// BenchmarkPortscanFull is a full TCP connect scan of 127.0.0.1 (bench/diag_scan.sh
// compares the same scan with nmap as a separate process).
func BenchmarkPortscanFull(b *testing.B) {
	r := config.Rule{Check: config.CheckPortscan, Ports: "1-65535"}
	for b.Loop() {
		res := Portscan(b.Context(), Target{Address: "127.0.0.1"}, r)
		if res.Status != OK {
			b.Fatalf("%v: %s", res.Status, res.Message)
		}
	}
}
