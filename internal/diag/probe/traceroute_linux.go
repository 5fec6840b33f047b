package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// traceUDPBasePort is the first destination port of UDP probes (as in
// traceroute(8)); probe seq goes to traceUDPBasePort+seq.
const traceUDPBasePort = 33434

// traceSizeofExtErr is sizeof(struct sock_extended_err).
const traceSizeofExtErr = 16

// traceUDP sends UDP probes from an ordinary (unprivileged) socket with
// IP_RECVERR set: the kernel queues the ICMP time exceeded and destination
// unreachable answers on the socket's error queue, with the offender's
// address and our original payload, which carries the probe's id and seq.
type traceUDP struct {
	conn *net.UDPConn
	rc   syscall.RawConn
	dst  netip.Addr
	id   int
}

func traceListenUDP(dst netip.Addr, id int) (*traceUDP, error) {
	network := "udp4"
	if dst.Is6() {
		network = "udp6"
	}
	conn, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, fmt.Errorf("UDP socket: %w", err)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("UDP socket: %w", err)
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if dst.Is6() {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1)
		}
	})
	if err = errors.Join(err, serr); err != nil {
		conn.Close()
		return nil, fmt.Errorf("IP_RECVERR: %w", err)
	}
	return &traceUDP{conn: conn, rc: rc, dst: dst, id: id}, nil
}

func (u *traceUDP) Close() error { return u.conn.Close() }

func (u *traceUDP) send(seq, ttl int) error {
	var serr error
	err := u.rc.Control(func(fd uintptr) {
		if u.dst.Is6() {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, ttl)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, ttl)
		}
	})
	if err = errors.Join(err, serr); err != nil {
		return fmt.Errorf("set TTL %d: %w", ttl, err)
	}
	payload := []byte(tracePayload)
	binary.BigEndian.PutUint16(payload[0:], uint16(u.id))
	binary.BigEndian.PutUint16(payload[2:], uint16(seq))
	to := netip.AddrPortFrom(u.dst, uint16(traceUDPBasePort+seq))
	// A send fails without sending when the socket has an earlier probe's
	// ICMP error pending (sk_err; the error is on the error queue too, and
	// reading that queue can set sk_err again from the next entry). Each
	// failure clears it, so retrying ends once the pending errors are
	// consumed; the bound only guards against a pathological stream.
	for range 256 {
		_, err = u.conn.WriteToUDPAddrPort(payload, to)
		if !traceUDPPending(err) {
			return err
		}
	}
	return err
}

// traceUDPPending reports whether a send failed only because the socket had
// an ICMP error pending.
func traceUDPPending(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTDOWN) ||
		errors.Is(err, syscall.EPROTO) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
}

func (u *traceUDP) read(out chan<- traceReply) {
	buf := make([]byte, 512)
	oob := make([]byte, 512)
	var got []traceReply
	for {
		got = got[:0]
		err := u.rc.Read(func(fd uintptr) bool {
			for {
				n, oobn, _, _, err := unix.Recvmsg(int(fd), buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
				if err != nil {
					break // EAGAIN: the queue is empty
				}
				if r, ok := u.parse(buf[:n], oob[:oobn], time.Now()); ok {
					got = append(got, r)
				}
			}
			// Ordinary datagrams (a service answering on a probe port) are
			// drained so they never fill the socket; they carry no seq.
			for {
				if _, _, _, _, err := unix.Recvmsg(int(fd), buf, nil, unix.MSG_DONTWAIT); err != nil {
					break
				}
			}
			return len(got) > 0
		})
		if err != nil {
			return // closed
		}
		for _, r := range got {
			select {
			case out <- r:
			default:
			}
		}
	}
}

// parse reads one error-queue message: payload is our original datagram,
// oob holds the sock_extended_err and the offender's address.
func (u *traceUDP) parse(payload, oob []byte, at time.Time) (traceReply, bool) {
	if len(payload) < 4 || int(binary.BigEndian.Uint16(payload)) != u.id {
		return traceReply{}, false
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return traceReply{}, false
	}
	for _, m := range msgs {
		v4 := m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_RECVERR
		v6 := m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_RECVERR
		if !v4 && !v6 || len(m.Data) < traceSizeofExtErr {
			continue
		}
		// struct sock_extended_err { u32 errno; u8 origin, type, code, pad; u32 info, data; }
		origin, typ, code := m.Data[4], m.Data[5], m.Data[6]
		from := traceSockaddr(m.Data[traceSizeofExtErr:])
		r := traceReply{seq: int(binary.BigEndian.Uint16(payload[2:])), from: from, at: at}
		switch {
		case origin == unix.SO_EE_ORIGIN_ICMP && typ == 11, origin == unix.SO_EE_ORIGIN_ICMP6 && typ == 3:
			// time exceeded: an intermediate hop
		case origin == unix.SO_EE_ORIGIN_ICMP && typ == 3 && code == 3,
			origin == unix.SO_EE_ORIGIN_ICMP6 && typ == 1 && code == 4:
			r.final = from == u.dst // port unreachable from the destination: reached
			if !r.final {
				r.unreachable = "port"
			}
		case origin == unix.SO_EE_ORIGIN_ICMP && typ == 3:
			r.unreachable = traceUnreachKind(false, int(code))
		case origin == unix.SO_EE_ORIGIN_ICMP6 && typ == 1:
			r.unreachable = traceUnreachKind(true, int(code))
		default:
			continue // a local error (EMSGSIZE...) or another ICMP type
		}
		return r, true
	}
	return traceReply{}, false
}

// traceSockaddr decodes the sockaddr_in or sockaddr_in6 (SO_EE_OFFENDER)
// that follows a sock_extended_err.
func traceSockaddr(b []byte) netip.Addr {
	if len(b) < 2 {
		return netip.Addr{}
	}
	switch binary.NativeEndian.Uint16(b) {
	case unix.AF_INET:
		if len(b) >= 8 {
			return netip.AddrFrom4([4]byte(b[4:8]))
		}
	case unix.AF_INET6:
		if len(b) >= 24 {
			return netip.AddrFrom16([16]byte(b[8:24])).Unmap()
		}
	}
	return netip.Addr{}
}
