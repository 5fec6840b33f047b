package probe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"
)

// scanConnectTCP makes one TCP connect attempt to ap with a non-blocking
// socket and closes it; nil means the port accepted the connection.
//
// It is the scanners' hot path, written on syscalls rather than net.Dialer
// because a scan is almost all failed connects: on loopback and fast LANs the
// reset is already there when connect(2) returns (SO_ERROR says so), so a
// closed port costs socket, connect, getsockopt and close, without registering
// the socket with the runtime poller or parking a goroutine. Otherwise the
// socket goes to the poller (os.NewFile) to wait until it is writable, at most
// timeout or until ctx is done. An open port is closed with a reset (SO_LINGER
// 0), as nmap does, so that scans leave no TIME_WAIT sockets behind. Like Go's
// dialer, it retries a self-connect (the kernel picking the destination port as
// the source port of a loopback connect), which would look open.
func scanConnectTCP(ctx context.Context, ap netip.AddrPort, timeout time.Duration) error {
	for range 3 {
		self, err := scanConnectOnce(ctx, ap, timeout)
		if !self {
			return err
		}
	}
	return fmt.Errorf("connect %s: the kernel kept connecting the socket to itself", ap)
}

// scanConnectOnce is one attempt; self reports a self-connect.
func scanConnectOnce(ctx context.Context, ap netip.AddrPort, timeout time.Duration) (self bool, err error) {
	family, sa, err := scanSockaddr(ap)
	if err != nil {
		return false, err
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, os.NewSyscallError("socket", err)
	}
	err = syscall.Connect(fd, sa)
	if err == nil {
		self = scanFinishOpen(fd, ap)
		_ = syscall.Close(fd)
		return self, nil
	}
	if err != syscall.EINPROGRESS && err != syscall.EINTR {
		_ = syscall.Close(fd)
		return false, os.NewSyscallError("connect", err)
	}
	if e, gerr := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ERROR); gerr == nil && e != 0 {
		_ = syscall.Close(fd)
		return false, os.NewSyscallError("connect", syscall.Errno(e))
	}

	// Not answered yet: wait for the socket to become writable.
	f := os.NewFile(uintptr(fd), "tcp-connect "+ap.String())
	defer f.Close()
	if err := f.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return false, fmt.Errorf("connect %s: cannot wait on the socket: %w", ap, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("connect %s: %w", ap, err)
	}
	var cerr error
	werr := rc.Write(func(fd uintptr) bool {
		e, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR)
		switch {
		case err != nil:
			cerr = os.NewSyscallError("getsockopt", err)
			return true
		case e != 0:
			cerr = os.NewSyscallError("connect", syscall.Errno(e))
			return true
		}
		if _, err := syscall.Getpeername(int(fd)); err != nil {
			return false // still connecting
		}
		self = scanFinishOpen(int(fd), ap)
		return true
	})
	if werr != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("connect %s: %w", ap, ctx.Err())
		}
		return false, fmt.Errorf("connect %s: %w", ap, werr)
	}
	return self, cerr
}

// scanFinishOpen prepares a connected socket for close: a reset instead of a
// FIN (no TIME_WAIT). It reports a self-connect.
func scanFinishOpen(fd int, ap netip.AddrPort) (self bool) {
	_ = syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
	local, err := syscall.Getsockname(fd)
	if err != nil {
		return false
	}
	switch la := local.(type) {
	case *syscall.SockaddrInet4:
		return ap.Addr().Is4() && la.Port == int(ap.Port()) && la.Addr == ap.Addr().As4()
	case *syscall.SockaddrInet6:
		return ap.Addr().Is6() && la.Port == int(ap.Port()) && la.Addr == ap.Addr().As16()
	}
	return false
}

// scanSockaddr converts ap for connect(2).
func scanSockaddr(ap netip.AddrPort) (int, syscall.Sockaddr, error) {
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		return syscall.AF_INET, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}, nil
	}
	if !a.Is6() {
		return 0, nil, fmt.Errorf("connect %s: not an IP address", ap)
	}
	sa := &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	if z := a.Zone(); z != "" {
		if n, err := strconv.Atoi(z); err == nil {
			sa.ZoneId = uint32(n)
		} else if ifi, err := net.InterfaceByName(z); err == nil {
			sa.ZoneId = uint32(ifi.Index)
		} else {
			return 0, nil, fmt.Errorf("connect %s: unknown zone %q: %w", ap, z, err)
		}
	}
	return syscall.AF_INET6, sa, nil
}

// scanFDBudget raises the soft RLIMIT_NOFILE to the hard limit when it is
// lower (best effort; Go does the same at start-up, so normally there is
// nothing to do) and returns how many sockets a scan may hold at once: the
// soft limit minus scanFDMargin, or half of a very low limit.
func scanFDBudget() int {
	const sane = 1 << 20 // the kernel's default nr_open
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 256
	}
	if lim.Cur < lim.Max && lim.Cur < sane {
		want := lim
		want.Cur = min(lim.Max, sane)
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
			lim.Cur = want.Cur
		}
	}
	cur := int(min(lim.Cur, sane))
	if cur <= 2*scanFDMargin {
		return max(cur/2, 1)
	}
	return cur - scanFDMargin
}
