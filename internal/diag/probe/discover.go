package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/netops-dev/netops/internal/config"
)

// DiscoverDetails is the Details of a discover result.
type DiscoverDetails struct {
	Network  string         `json:"network"`   // the CIDR swept (or the one address)
	Scanned  int            `json:"scanned"`   // addresses probed
	Alive    []DiscoverHost `json:"alive"`     // sorted by address
	TCPPorts []int          `json:"tcp_ports"` // ports of the TCP probes
}

// DiscoverHost is a host that answered.
type DiscoverHost struct {
	Address string  `json:"address"`
	RTT     float64 `json:"rtt"` // seconds to its first answer
	Via     string  `json:"via"` // "icmp", "tcp/22 open", "tcp/80 refused"
}

// Discover sweeps the addresses of a network target (see Portscan for which
// addresses; more than r.MaxHosts, default 256, is refused as UNKNOWN) and
// lists the hosts that answer. A host is alive when it answers an ICMP echo,
// or a TCP connect to 22, 80, 443, 445 or 3389 succeeds or is refused (a
// reset is an answer). Every probe is in flight at once (one ICMP socket for
// all echoes, a pool of connects), a host is no longer probed once it answered,
// and the sweep ends as soon as every host answered, else after r.Timeout
// (default 1s) per ICMP round (1 + r.Retries rounds) and the connects' own
// timeout. Without ICMP permission it sweeps with TCP only and says so in Mode.
// Metrics: alive (count) and scan_time (s). Fewer than r.MinAlive hosts alive
// is CRITICAL.
func Discover(ctx context.Context, t Target, r config.Rule) Result {
	return discoverRun(ctx, t, r, nil)
}

// discoverRun is Discover with a hook to adjust the sweep (tests).
func discoverRun(ctx context.Context, t Target, r config.Rule, tune func(*discSweep)) Result {
	hosts, network, fail, ok := scanHostsOf(ctx, t, r.MaxHosts)
	if !ok {
		return fail
	}
	if network == "" {
		network = hosts[0].String()
	}
	sw := newDiscSweep(r, hosts)
	if tune != nil {
		tune(sw)
	}
	found, mode, err := sw.run(ctx)

	det := DiscoverDetails{Network: network, Scanned: len(hosts), Alive: []DiscoverHost{}}
	for _, p := range sw.ports {
		det.TCPPorts = append(det.TCPPorts, int(p))
	}
	var names []string
	for i, h := range found {
		if h.alive {
			det.Alive = append(det.Alive, DiscoverHost{Address: hosts[i].String(), RTT: h.rtt.Seconds(), Via: h.via})
			names = append(names, hosts[i].String())
		}
	}
	elapsed := sw.elapsed
	res := Result{Mode: mode, Details: det}
	res.AddMetric("alive", float64(len(det.Alive)), "")
	res.AddMetric("scan_time", elapsed.Seconds(), "s")
	summary := fmt.Sprintf("%d of %d hosts alive in %s in %s", len(det.Alive), len(hosts), network,
		FormatSeconds(elapsed.Seconds()))
	if len(names) > 0 {
		summary += ": " + scanJoin(names)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		res.Status, res.Reason = Unknown, ReasonTimeout
		res.Message = fmt.Sprintf("sweep interrupted (%v); so far %s", ctx.Err(), summary)
	case err != nil:
		res.Status, res.Reason = Unknown, ReasonError
		res.Message = fmt.Sprintf("scanner error, not a host state: %v", err)
		if Classify(err) == ReasonResource {
			res.Reason = ReasonResource
			res.Message += "; raise the open-file limit (ulimit -n) or free local ports, then sweep again"
		}
	case r.MinAlive > 0 && len(det.Alive) < r.MinAlive:
		res.Status, res.Reason = Critical, ReasonThreshold
		res.Message = fmt.Sprintf("%s; fewer than min_alive %d", summary, r.MinAlive)
	default:
		res.Message = summary
	}
	return res
}

// discWaveDelay spaces the TCP probes of a sweep: port 22 of every host goes
// out with the ICMP echoes, port 80 of the hosts that have not answered yet
// this much later, and so on, so a host that answers at once gets one connect,
// not five.
const discWaveDelay = 20 * time.Millisecond

// discHost is what the sweep learned about one address.
type discHost struct {
	alive bool
	rtt   time.Duration
	via   string
}

// discListenFunc opens the ICMP socket of a sweep: unprivileged, else raw.
// Tests replace it to take the no-permission path.
type discListenFunc func(v6 bool) (conn *icmp.PacketConn, mode string, err error)

// discSweep is one discovery sweep.
type discSweep struct {
	hosts   []netip.Addr
	ports   []uint16
	timeout time.Duration // ICMP: wait after each round
	rounds  int           // ICMP rounds
	tcp     *portScanner  // TCP connect probes (dial, pool size, resource retries)
	listen  discListenFunc

	start   time.Time
	elapsed time.Duration
	sentAt  []atomic.Int64 // ICMP send time of each host, ns since start
	mu      sync.Mutex
	found   []discHost
	left    int // hosts not alive yet
	done    context.CancelCauseFunc
	allDone error // the cause given to done when every host answered
}

func newDiscSweep(r config.Rule, hosts []netip.Addr) *discSweep {
	ports := []uint16{22, 80, 443, 445, 3389}
	timeout := r.Timeout.D()
	if timeout <= 0 {
		timeout = scanDefaultTimeout
	}
	return &discSweep{
		hosts:   hosts,
		ports:   ports,
		timeout: timeout,
		rounds:  1 + max(r.Retries, 0),
		tcp:     newPortScanner(config.Rule{Timeout: config.Duration(timeout)}, len(hosts)*len(ports)),
		listen:  discListenICMP,
	}
}

// run sweeps; it returns what each host did, the mode, and a scanner error or
// ctx's error when the sweep could not finish.
func (d *discSweep) run(ctx context.Context) ([]discHost, string, error) {
	d.start = time.Now()
	defer func() { d.elapsed = time.Since(d.start) }()
	d.found = make([]discHost, len(d.hosts))
	d.sentAt = make([]atomic.Int64, len(d.hosts))
	d.left = len(d.hosts)
	d.allDone = errors.New("every host answered")
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	d.done = cancel

	mode := "icmp+tcp"
	conn, icmpMode, err := d.listen(d.hosts[0].Is6())
	switch {
	case err == nil:
		mode += " (" + icmpMode + ")"
	case Classify(err) == ReasonPermission:
		mode = "tcp-only (no ICMP permission)"
	default:
		mode = "tcp-only (ICMP unavailable: " + err.Error() + ")"
	}

	var probes, recv sync.WaitGroup
	if conn != nil {
		stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
		defer stop()
		defer conn.Close()
		raw := icmpMode == ICMPModeRaw
		id := rand.IntN(0xffff) + 1
		token := rand.Uint64()
		recv.Go(func() { d.receive(ctx, conn, raw, id, token) })
		probes.Go(func() { d.sendRounds(ctx, conn, raw, id, token) })
	}
	total := len(d.hosts) * len(d.ports)
	var next atomic.Int64
	for range min(d.tcp.workers, total) {
		probes.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= total {
					return
				}
				h, wave := i%len(d.hosts), i/len(d.hosts)
				if wave > 0 && !sleepCtx(ctx, time.Until(d.start.Add(time.Duration(wave)*discWaveDelay))) {
					return
				}
				if d.isAlive(h) {
					continue
				}
				port := d.ports[wave]
				t0 := time.Now()
				st, err := d.tcp.connect(ctx, netip.AddrPortFrom(d.hosts[h], port))
				switch {
				case err != nil:
					cancel(err)
					return
				case st == stateOpen || st == stateClosed:
					d.mark(h, time.Since(t0), fmt.Sprintf("tcp/%d %s", port, st))
				}
			}
		})
	}
	probes.Wait()
	cause := context.Cause(ctx)
	cancel(nil) // stops the receiver
	recv.Wait()

	d.mu.Lock()
	found := append([]discHost(nil), d.found...)
	d.mu.Unlock()
	if cause != nil && !errors.Is(cause, d.allDone) {
		return found, mode, cause
	}
	return found, mode, nil
}

func (d *discSweep) isAlive(i int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.found[i].alive
}

// mark records the first answer of host i; the last host to answer ends the
// sweep.
func (d *discSweep) mark(i int, rtt time.Duration, via string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.found[i].alive {
		return
	}
	d.found[i] = discHost{alive: true, rtt: rtt, via: via}
	d.left--
	if d.left == 0 {
		d.done(d.allDone)
	}
}

// discListenICMP opens an unprivileged ICMP socket, else a raw one.
func discListenICMP(v6 bool) (*icmp.PacketConn, string, error) {
	dgram, raw := "udp4", "ip4:icmp"
	if v6 {
		dgram, raw = "udp6", "ip6:ipv6-icmp"
	}
	c, errU := icmp.ListenPacket(dgram, "")
	if errU == nil {
		return c, ICMPModeUnprivileged, nil
	}
	c, errR := icmp.ListenPacket(raw, "")
	if errR == nil {
		return c, ICMPModeRaw, nil
	}
	if Classify(errU) == ReasonPermission && Classify(errR) == ReasonPermission {
		return nil, "", &icmpPermissionError{unprivileged: errU, raw: errR}
	}
	return nil, "", fmt.Errorf("icmp socket: %w", errors.Join(errU, errR))
}

// discEchoData is the payload of a sweep's echo request to host i: the index
// and the sweep's token, so replies are matched to this sweep and host.
func discEchoData(i int, token uint64) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint32(b, uint32(i))
	binary.BigEndian.PutUint64(b[4:], token)
	return b
}

// sendRounds sends an echo request to every host not alive yet, waits
// d.timeout for the replies, and does it again d.rounds times in all.
func (d *discSweep) sendRounds(ctx context.Context, conn *icmp.PacketConn, raw bool, id int, token uint64) {
	var typ icmp.Type = ipv4.ICMPTypeEcho
	if d.hosts[0].Is6() {
		typ = ipv6.ICMPTypeEchoRequest
	}
	for round := range d.rounds {
		for i, h := range d.hosts {
			if ctx.Err() != nil {
				return
			}
			if d.isAlive(i) {
				continue
			}
			msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: (i + round) & 0xffff, Data: discEchoData(i, token)}}
			b, err := msg.Marshal(nil)
			if err != nil {
				continue
			}
			var dst net.Addr = &net.IPAddr{IP: h.AsSlice(), Zone: h.Zone()}
			if !raw {
				dst = &net.UDPAddr{IP: h.AsSlice(), Zone: h.Zone()}
			}
			backoff := d.tcp.resourceBackoff
			for try := 0; ; try++ {
				d.sentAt[i].Store(int64(time.Since(d.start)))
				_, err := conn.WriteTo(b, dst)
				if err == nil || Classify(err) != ReasonResource || try >= d.tcp.resourceRetries ||
					!sleepCtx(ctx, backoff) {
					// Other send errors (unreachable, a broadcast address)
					// just mean no echo from that host.
					break
				}
				backoff *= 2
			}
		}
		if !sleepCtx(ctx, d.timeout) {
			return
		}
	}
}

// receive reads echo replies until conn is closed.
func (d *discSweep) receive(ctx context.Context, conn *icmp.PacketConn, raw bool, id int, token uint64) {
	proto, reply := 1, icmp.Type(ipv4.ICMPTypeEchoReply)
	if d.hosts[0].Is6() {
		proto, reply = 58, ipv6.ICMPTypeEchoReply
	}
	buf := make([]byte, 1500)
	for ctx.Err() == nil {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		at := time.Since(d.start)
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != reply {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		// On an unprivileged socket the kernel sets and filters the ID.
		if !ok || (raw && echo.ID != id) || len(echo.Data) < 12 ||
			binary.BigEndian.Uint64(echo.Data[4:12]) != token {
			continue
		}
		i := int(binary.BigEndian.Uint32(echo.Data))
		if i >= len(d.hosts) || discPeerAddr(peer) != d.hosts[i].WithZone("") {
			continue
		}
		d.mark(i, at-time.Duration(d.sentAt[i].Load()), "icmp")
	}
}

// discPeerAddr is the IP address of a packet's source.
func discPeerAddr(a net.Addr) netip.Addr {
	var ip net.IP
	switch v := a.(type) {
	case *net.IPAddr:
		ip = v.IP
	case *net.UDPAddr:
		ip = v.IP
	default:
		return netip.Addr{}
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}
