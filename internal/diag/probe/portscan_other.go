//go:build !linux

package probe

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// scanConnectTCP makes one TCP connect attempt to ap and closes it; nil means
// the port accepted the connection. This portable version uses net.Dialer
// (portscan_linux.go has the fast one).
func scanConnectTCP(ctx context.Context, ap netip.AddrPort, timeout time.Duration) error {
	d := net.Dialer{Timeout: timeout, KeepAlive: -1}
	c, err := d.DialContext(ctx, "tcp", ap.String())
	if err != nil {
		return err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	return c.Close()
}

// scanFDBudget is how many sockets a scan may hold at once where the
// open-file limit is not read.
func scanFDBudget() int { return 256 }
