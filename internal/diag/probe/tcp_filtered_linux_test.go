package probe

import (
	"context"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/config"
)

// TestTCPFiltered makes a loopback port that drops SYNs: a socket listening
// with backlog 0 and never accepting, whose queue is filled first. A connect
// to it hangs like one to a filtered port, so the check must time out.
func TestTCPFiltered(t *testing.T) {
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
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))

	// Fill the accept queue until a connect hangs.
	filled := false
	for range 8 {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		cancel()
		if err != nil {
			filled = true
			break
		}
		t.Cleanup(func() { c.Close() })
	}
	if !filled {
		t.Skip("this kernel accepts connects beyond the listen backlog; cannot simulate a filtered port")
	}

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	res := TCP(ctx, Target{Address: addr}, config.Rule{})
	tcpTestCheck(t, res, Critical, ReasonTimeout, []string{"no answer from " + addr + " within", "filtered"}, nil)
}
