package probe

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/config"
)

// scanTestFiltered makes a loopback port that drops SYNs: a socket listening
// with backlog 0 that never accepts, whose queue is filled first. A connect to
// it hangs like one to a filtered port.
func scanTestFiltered(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*syscall.SockaddrInet4).Port
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for range 8 {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		cancel()
		if err != nil {
			return port
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("this kernel accepts connects beyond the listen backlog; cannot make a filtered port")
	return 0
}

func TestPortscanFiltered(t *testing.T) {
	filtered := scanTestFiltered(t)
	open := scanTestOpen(t, "127.0.0.1", 1)
	closed := scanTestClosed(t, "127.0.0.1", 1)
	tests := []struct {
		name   string
		rule   config.Rule
		status Status
		reason string
		msg    string
	}{
		{"states", config.Rule{Ports: scanTestSpec([]int{filtered}, open, closed)}, OK, "", "1 open, 1 closed, 1 filtered"},
		{"retried", config.Rule{Ports: scanTestSpec([]int{filtered}), Retries: 1}, OK, "", "0 open, 0 closed, 1 filtered"},
		{"expected open but filtered", config.Rule{ExpectOpen: scanTestSpec([]int{filtered})}, Critical, ReasonMismatch,
			fmt.Sprintf("port %d is filtered but expected open", filtered)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.rule.Timeout = config.Duration(150 * time.Millisecond)
			start := time.Now()
			res := Portscan(t.Context(), Target{Address: "127.0.0.1"}, tt.rule)
			if res.Status != tt.status || res.Reason != tt.reason {
				t.Fatalf("%v %q: %s", res.Status, res.Reason, res.Message)
			}
			if !strings.Contains(res.Message, tt.msg) {
				t.Errorf("message %q lacks %q", res.Message, tt.msg)
			}
			if least := time.Duration(1+tt.rule.Retries) * 150 * time.Millisecond; time.Since(start) < least {
				t.Errorf("took %v: a filtered port waits the timeout each attempt", time.Since(start))
			}
		})
	}
}
