package probe

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/icmp"

	"github.com/netops-dev/netops/internal/config"
)

// discTestNoICMP makes the sweep's ICMP socket fail as it does for a user
// without permission.
func discTestNoICMP(s *discSweep) {
	s.listen = func(bool) (*icmp.PacketConn, string, error) {
		return nil, "", &icmpPermissionError{
			unprivileged: os.NewSyscallError("socket", syscall.EACCES),
			raw:          os.NewSyscallError("socket", syscall.EPERM),
		}
	}
}

func discTestDetails(t *testing.T, res Result) DiscoverDetails {
	t.Helper()
	det, ok := res.Details.(DiscoverDetails)
	if !ok {
		t.Fatalf("details %T (%v %s: %s)", res.Details, res.Status, res.Reason, res.Message)
	}
	return det
}

// TestDiscoverLoopback sweeps loopback networks: on Linux every 127/8 address
// answers (ICMP echo, or a reset on the TCP ports).
func TestDiscoverLoopback(t *testing.T) {
	tests := []struct {
		name    string
		address string
		tune    func(*discSweep)
		want    []string
		mode    string
	}{
		{"29", "127.0.0.0/29", nil, []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"}, "icmp+tcp"},
		{"29 tcp only", "127.0.0.0/29", discTestNoICMP, []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"},
			"tcp-only (no ICMP permission)"},
		{"ipv6", "::1/128", nil, []string{"::1"}, "icmp+tcp"},
		{"ipv6 tcp only", "::1/128", discTestNoICMP, []string{"::1"}, "tcp-only (no ICMP permission)"},
		{"host", "127.0.0.1", nil, []string{"127.0.0.1"}, "icmp+tcp"},
		{"sorted numerically", "127.0.0.8/29", nil, []string{"127.0.0.9", "127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"}, "icmp+tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ := config.TargetNetwork
			if !strings.Contains(tt.address, "/") {
				typ = config.TargetHost
			}
			res := discoverRun(t.Context(), Target{Type: typ, Address: tt.address}, config.Rule{}, tt.tune)
			t.Logf("mode %q: %s", res.Mode, res.Message)
			if res.Status != OK || !strings.HasPrefix(res.Mode, tt.mode) {
				t.Fatalf("%v %q mode %q: %s", res.Status, res.Reason, res.Mode, res.Message)
			}
			det := discTestDetails(t, res)
			var got []string
			for _, h := range det.Alive {
				got = append(got, h.Address)
				if h.RTT <= 0 || h.RTT > 5 || h.Via == "" {
					t.Errorf("host %+v", h)
				}
				if tt.tune != nil && !strings.HasPrefix(h.Via, "tcp/") {
					t.Errorf("%s answered via %q without ICMP", h.Address, h.Via)
				}
			}
			if !slices.Equal(got, tt.want) || det.Scanned != len(tt.want) {
				t.Errorf("alive %v (scanned %d), want %v", got, det.Scanned, tt.want)
			}
			if m, _ := res.Metric("alive"); int(m.Value) != len(tt.want) {
				t.Errorf("metric alive %v", m.Value)
			}
			if _, ok := res.Metric("scan_time"); !ok {
				t.Error("scan_time missing")
			}
			if !slices.Equal(det.TCPPorts, []int{22, 80, 443, 445, 3389}) {
				t.Errorf("tcp ports %v", det.TCPPorts)
			}
		})
	}
}

func TestDiscoverICMPOnly(t *testing.T) {
	// With no TCP answer at all (every connect "times out"), hosts are found
	// by ICMP alone.
	tests := []struct {
		address string
		alive   int
	}{
		{"127.0.0.0/30", 2},
		{"::1/128", 1},
	}
	for _, tt := range tests {
		t.Run(tt.address, func(t *testing.T) {
			res := discoverRun(t.Context(), Target{Type: config.TargetNetwork, Address: tt.address},
				config.Rule{Timeout: config.Duration(200 * time.Millisecond)},
				func(s *discSweep) {
					s.tcp.dial = func(ctx context.Context, _ netip.AddrPort) error {
						select {
						case <-ctx.Done():
							return ctx.Err()
						case <-time.After(200 * time.Millisecond):
							return fmt.Errorf("connect: %w", os.ErrDeadlineExceeded)
						}
					}
				})
			if strings.HasPrefix(res.Mode, "tcp-only") {
				t.Skipf("no ICMP here: %s", res.Mode)
			}
			det := discTestDetails(t, res)
			if res.Status != OK || len(det.Alive) != tt.alive {
				t.Fatalf("%v: %s", res.Status, res.Message)
			}
			for _, h := range det.Alive {
				if h.Via != "icmp" {
					t.Errorf("%+v", h)
				}
			}
		})
	}
}

func TestDiscoverAssertions(t *testing.T) {
	tests := []struct {
		name     string
		address  string
		r        config.Rule
		status   Status
		reason   string
		msg      string
		detailed bool
	}{
		{"min_alive met", "127.0.0.0/30", config.Rule{MinAlive: 2}, OK, "", "2 of 2 hosts alive in 127.0.0.0/30", true},
		{"min_alive missed", "127.0.0.0/30", config.Rule{MinAlive: 3}, Critical, ReasonThreshold,
			"2 of 2 hosts alive in 127.0.0.0/30 in", true},
		{"too many addresses", "127.0.0.0/16", config.Rule{}, Unknown, ReasonError,
			"127.0.0.0/16 has 65536 addresses, more than max_hosts 256; raise max_hosts to scan it", false},
		{"max_hosts given", "127.0.0.0/25", config.Rule{MaxHosts: 64}, Unknown, ReasonError,
			"127.0.0.0/25 has 128 addresses, more than max_hosts 64; raise max_hosts to scan it", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Discover(t.Context(), Target{Type: config.TargetNetwork, Address: tt.address}, tt.r)
			if res.Status != tt.status || res.Reason != tt.reason || !strings.Contains(res.Message, tt.msg) {
				t.Fatalf("got %v %q %q", res.Status, res.Reason, res.Message)
			}
			if tt.status == Critical && !strings.Contains(res.Message, "fewer than min_alive 3") {
				t.Errorf("message %q", res.Message)
			}
			if _, ok := res.Details.(DiscoverDetails); ok != tt.detailed {
				t.Errorf("details %T", res.Details)
			}
		})
	}
}

func TestDiscoverResourceError(t *testing.T) {
	res := discoverRun(t.Context(), Target{Type: config.TargetNetwork, Address: "127.0.0.0/29"}, config.Rule{},
		func(s *discSweep) {
			discTestNoICMP(s)
			s.tcp.resourceBackoff = time.Millisecond
			s.tcp.dial = func(context.Context, netip.AddrPort) error {
				return os.NewSyscallError("socket", syscall.EMFILE)
			}
		})
	if res.Status != Unknown || res.Reason != ReasonResource || !strings.Contains(res.Message, "not a host state") ||
		!strings.Contains(res.Message, "too many open files") {
		t.Fatalf("%v %q: %s", res.Status, res.Reason, res.Message)
	}
}

func TestDiscoverCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	res := Discover(ctx, Target{Type: config.TargetNetwork, Address: "127.0.0.0/29"}, config.Rule{})
	if res.Status != Unknown || res.Reason != ReasonTimeout || !strings.Contains(res.Message, "sweep interrupted") {
		t.Fatalf("%v %q: %s", res.Status, res.Reason, res.Message)
	}
}

// BenchmarkDiscover24 sweeps 127.0.0.0/24 (bench/diag_scan.sh compares the
// same sweep with fping as a separate process).
func BenchmarkDiscover24(b *testing.B) {
	for b.Loop() {
		res := Discover(b.Context(), Target{Type: config.TargetNetwork, Address: "127.0.0.0/24"}, config.Rule{})
		if m, _ := res.Metric("alive"); res.Status != OK || m.Value != 254 {
			b.Fatalf("%v: %s", res.Status, res.Message)
		}
	}
}
