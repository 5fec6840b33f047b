package probe

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/netops-dev/netops/internal/config"
)

// Traceroute metrics besides MetricRTT (the destination's average) and
// MetricLoss (at the destination).
const MetricHops = "hops"

// Traceroute defaults.
const (
	TraceMaxHops = 30          // when rule.Count is 0
	TraceProbes  = 3           // probes per hop
	TraceWait    = time.Second // how long a round of probes waits for answers
	traceMaxTTL  = 255
	tracePayload = "netops-traceroute-0123456789abcd" // 32 bytes
)

// TraceOptions tune Trace.
type TraceOptions struct {
	MaxHops int           // highest TTL probed (0: 30)
	Probes  int           // probes per hop (0: 3, at most 16)
	Wait    time.Duration // how long each round waits for answers (0: 1s)
	// ResolveNames looks up the reverse DNS name of every hop (off by default:
	// it is slow where reverse zones are missing).
	ResolveNames bool
	// Mode is TraceICMP (ICMP echo over a raw socket: root or CAP_NET_RAW),
	// TraceUDP (UDP probes, answers read from the socket error queue: no
	// privilege, Linux only) or "" for ICMP when permitted, else UDP.
	Mode string
}

// Trace modes.
const (
	TraceICMP = "icmp"
	TraceUDP  = "udp"
)

// TraceHop is one hop of a path: the router (or the destination) that
// answered probes sent with this TTL.
type TraceHop struct {
	TTL     int    `json:"ttl"`
	Address string `json:"address,omitempty"` // "" when no probe was answered
	Name    string `json:"name,omitempty"`
	// Others lists further addresses that answered at this TTL (load-balanced
	// paths).
	Others   []string `json:"others,omitempty"`
	Sent     int      `json:"sent"`
	Received int      `json:"received"`
	Loss     float64  `json:"loss"` // percent
	Min      float64  `json:"min"`  // seconds; 0 when nothing was received
	Avg      float64  `json:"avg"`
	Max      float64  `json:"max"`
	// Unreachable is set when this hop answered "destination unreachable"
	// ("host", "network", "port", "prohibited", "code N").
	Unreachable string `json:"unreachable,omitempty"`
}

// TraceDetails is the Details of a traceroute result.
type TraceDetails struct {
	Destination string     `json:"destination"` // the IP address traced
	Mode        string     `json:"mode"`        // TraceICMP or TraceUDP
	Reached     bool       `json:"reached"`
	Hops        []TraceHop `json:"hops"`
}

// Traceroute traces the path to the target's host, mtr-like, with ICMP echo
// probes of increasing TTL: up to rule.Count hops (default 30), three probes
// per hop, each round of probes waiting rule.Interval (default 1s) for
// answers, the whole trace bounded by rule.Timeout. It reports per hop the
// address, sent/received, loss and min/avg/max RTT (Details: TraceDetails).
// Metrics: hops, rtt (the destination's average), loss (at the destination).
// OK when the destination answered, else CRITICAL (reason unreachable, or
// timeout when ctx or rule.Timeout ended the trace first). IPv4 and IPv6.
//
// Probes are ICMP echo requests on a raw socket (Mode "icmp", root or
// CAP_NET_RAW). Without that permission, on Linux, they are UDP datagrams to
// ports 33434 and up whose ICMP answers the kernel queues on the socket's
// error queue (IP_RECVERR, as tracepath does; Mode "udp"). When neither can
// run, the result is UNKNOWN (reason permission) with the fix.
func Traceroute(ctx context.Context, t Target, rule config.Rule) Result {
	if rule.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rule.Timeout.D())
		defer cancel()
	}
	host := Host(t.Address)
	if host == "" {
		return Failf(Unknown, ReasonError, "traceroute: target %q has no host", t.Address)
	}
	dst, err := traceResolve(ctx, host)
	if err != nil {
		reason := Classify(err)
		return Failf(StatusFor(reason), reason, "traceroute: cannot resolve %s: %v", host, err)
	}
	opts := TraceOptions{MaxHops: rule.Count}
	if rule.Interval > 0 {
		opts.Wait = rule.Interval.D()
	}
	d, err := Trace(ctx, dst, opts)
	return traceResult(ctx, dst, d, err, traceMaxHops(opts))
}

// traceResult turns what Trace returned into a probe result.
func traceResult(ctx context.Context, dst netip.Addr, d TraceDetails, err error, maxHops int) Result {
	if err != nil && ctx.Err() == nil {
		if reason := Classify(err); reason == ReasonPermission {
			res := Failf(Unknown, ReasonPermission,
				"traceroute needs a raw ICMP socket (%v): run netops as root, or allow it with 'sudo setcap cap_net_raw+ep %s'",
				err, traceExecutable())
			res.Mode = d.Mode
			return res
		}
		reason := Classify(err)
		res := Failf(StatusFor(reason), reason, "traceroute to %s: %v", dst, err)
		res.Mode, res.Details = d.Mode, d
		return res
	}

	res := Result{Mode: d.Mode, Details: d}
	res.AddMetric(MetricHops, float64(len(d.Hops)), "")
	if d.Reached {
		last := d.Hops[len(d.Hops)-1]
		res.AddMetric(MetricRTT, last.Avg, "s")
		res.AddMetric(MetricLoss, last.Loss, "%")
		res.Status = OK
		res.Message = fmt.Sprintf("%s reached in %d %s, rtt %s, loss %s%%",
			dst, len(d.Hops), tracePlural(len(d.Hops), "hop", "hops"), FormatSeconds(last.Avg), traceFloat(last.Loss))
		return res
	}
	res.AddMetric(MetricLoss, 100, "%")
	res.Status, res.Reason = Critical, ReasonUnreachable
	if err != nil && ctx.Err() != nil {
		res.Reason = ReasonTimeout
	}
	last := -1
	for i, h := range d.Hops {
		if h.Received > 0 {
			last = i
		}
	}
	switch {
	case last < 0:
		res.Message = fmt.Sprintf("%s not reached: no hop answered within %d hops", dst, maxHops)
	case d.Hops[last].Unreachable != "":
		h := d.Hops[last]
		res.Message = fmt.Sprintf("%s not reached: hop %d (%s) says %s unreachable", dst, h.TTL, h.Address, h.Unreachable)
	default:
		h := d.Hops[last]
		res.Message = fmt.Sprintf("%s not reached: last answer from hop %d (%s)", dst, h.TTL, h.Address)
	}
	if res.Reason == ReasonTimeout {
		res.Message += " before the timeout"
	}
	return res
}

func tracePlural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func traceFloat(f float64) string { return strings.TrimSuffix(fmt.Sprintf("%.1f", f), ".0") }

func traceExecutable() string {
	if p, err := os.Executable(); err == nil {
		return p
	}
	return "$(command -v netops)"
}

// traceResolve returns the address to trace: host itself when it is an IP,
// else its first IPv4 address, else its first address.
func traceResolve(ctx context.Context, host string) (netip.Addr, error) {
	if host == "" {
		return netip.Addr{}, errors.New("empty host")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap(), nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, a := range addrs {
		if a.Unmap().Is4() {
			return a.Unmap(), nil
		}
	}
	if len(addrs) == 0 {
		return netip.Addr{}, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
	}
	return addrs[0], nil
}

func traceMaxHops(o TraceOptions) int {
	if o.MaxHops <= 0 {
		return TraceMaxHops
	}
	return min(o.MaxHops, traceMaxTTL)
}

// traceProbe is one probe sent.
type traceProbe struct {
	ttl  int
	sent time.Time
}

// traceReply is one ICMP answer to a probe of ours.
type traceReply struct {
	seq         int
	from        netip.Addr
	at          time.Time
	final       bool   // echo reply from the destination
	unreachable string // destination unreachable, with its kind
}

// traceHopState accumulates the answers for one TTL.
type traceHopState struct {
	sent     int
	rtts     []time.Duration
	from     []netip.Addr // distinct responders, first seen first
	count    map[netip.Addr]int
	unreach  string
	finalHit bool
}

// Trace sends ICMP echo probes with TTL 1..MaxHops towards dst, in rounds
// (one probe per TTL per round, Probes rounds, later rounds only up to the
// destination once it answered), waits up to Wait per round, and returns the
// hops up to the destination (or up to the last hop that answered). The
// error is set when the probes could not be sent (no permission: it wraps
// EPERM) or ctx ended the trace; the details hold what was measured so far.
func Trace(ctx context.Context, dst netip.Addr, opts TraceOptions) (TraceDetails, error) {
	dst = dst.Unmap()
	det := TraceDetails{Destination: dst.String()}
	maxHops := traceMaxHops(opts)
	probes := opts.Probes
	if probes <= 0 {
		probes = TraceProbes
	}
	probes = min(probes, 16)
	wait := opts.Wait
	if wait <= 0 {
		wait = TraceWait
	}

	id := int(rand.N[uint32](1 << 16))
	conn, mode, err := traceOpen(dst, id, opts.Mode)
	det.Mode = mode
	if err != nil {
		return det, err
	}
	replies := make(chan traceReply, 4*traceMaxTTL)
	var wg sync.WaitGroup
	wg.Go(func() { conn.read(replies) })
	defer wg.Wait()
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	hops := make([]traceHopState, maxHops+1) // by TTL
	sent := map[int]traceProbe{}
	destTTL := 0 // lowest TTL the destination (or an unreachable) answered at
	var runErr error

	if err := ctx.Err(); err != nil {
		return det, fmt.Errorf("trace not started: %w", err)
	}

rounds:
	for round := range probes {
		limit := maxHops
		if destTTL > 0 {
			limit = destTTL
		}
		answered := map[int]bool{}
		var roundSent []int
		// abandon forgets this round's unanswered probes when ctx ends it: they
		// were not given their time, so they are not losses.
		abandon := func() {
			runErr = ctx.Err()
			for _, ttl := range roundSent {
				if !answered[ttl] {
					hops[ttl].sent--
				}
			}
		}
		for ttl := 1; ttl <= limit; ttl++ {
			seq := round<<8 | ttl
			at := time.Now() // before sending: on loopback the reply can beat the return
			if err := conn.send(seq, ttl); err != nil {
				if ctx.Err() != nil {
					abandon()
					break rounds
				}
				return det, fmt.Errorf("sending probe ttl %d: %w", ttl, err)
			}
			sent[seq] = traceProbe{ttl: ttl, sent: at}
			hops[ttl].sent++
			roundSent = append(roundSent, ttl)
		}
		// Wait for this round: until every probe up to the destination is
		// answered, or wait has passed since the last probe went out.
		timer := time.NewTimer(wait)
	collect:
		for {
			if destTTL > 0 && len(answered) >= destTTL && traceAllAnswered(answered, destTTL) {
				break
			}
			select {
			case <-ctx.Done():
				timer.Stop()
				abandon()
				break rounds
			case <-timer.C:
				break collect
			case r := <-replies:
				p, ok := sent[r.seq]
				if !ok {
					continue // a duplicate or a reply from an earlier trace
				}
				delete(sent, r.seq)
				h := &hops[p.ttl]
				h.rtts = append(h.rtts, r.at.Sub(p.sent))
				if h.count == nil {
					h.count = map[netip.Addr]int{}
				}
				if h.count[r.from] == 0 {
					h.from = append(h.from, r.from)
				}
				h.count[r.from]++
				if r.final {
					h.finalHit = true
				}
				if r.unreachable != "" {
					h.unreach = r.unreachable
				}
				if (r.final || r.unreachable != "") && (destTTL == 0 || p.ttl < destTTL) {
					destTTL = p.ttl
				}
				if r.seq>>8 == round {
					answered[p.ttl] = true
				}
			}
		}
		timer.Stop()
	}

	last := destTTL
	if last == 0 {
		for ttl := maxHops; ttl >= 1; ttl-- {
			if len(hops[ttl].rtts) > 0 {
				last = ttl
				break
			}
		}
	}
	for ttl := 1; ttl <= last; ttl++ {
		det.Hops = append(det.Hops, traceHopSummary(ctx, ttl, &hops[ttl], opts.ResolveNames))
	}
	det.Reached = destTTL > 0 && hops[destTTL].finalHit
	if runErr != nil {
		return det, fmt.Errorf("trace cut short: %w", runErr)
	}
	return det, nil
}

// traceAllAnswered reports whether every TTL up to destTTL got its probe of
// this round answered.
func traceAllAnswered(answered map[int]bool, destTTL int) bool {
	for ttl := 1; ttl <= destTTL; ttl++ {
		if !answered[ttl] {
			return false
		}
	}
	return true
}

func traceHopSummary(ctx context.Context, ttl int, h *traceHopState, resolve bool) TraceHop {
	hop := TraceHop{TTL: ttl, Sent: h.sent, Received: len(h.rtts), Unreachable: h.unreach}
	if h.sent > 0 {
		hop.Loss = float64(h.sent-hop.Received) / float64(h.sent) * 100
	}
	if len(h.rtts) > 0 {
		var sum time.Duration
		mn, mx := h.rtts[0], h.rtts[0]
		for _, d := range h.rtts {
			sum += d
			mn, mx = min(mn, d), max(mx, d)
		}
		hop.Min, hop.Max = mn.Seconds(), mx.Seconds()
		hop.Avg = (sum / time.Duration(len(h.rtts))).Seconds()
	}
	if len(h.from) > 0 {
		// The most frequent responder first; ties keep the order seen.
		from := slices.Clone(h.from)
		slices.SortStableFunc(from, func(a, b netip.Addr) int { return h.count[b] - h.count[a] })
		hop.Address = from[0].String()
		for _, a := range from[1:] {
			hop.Others = append(hop.Others, a.String())
		}
		if resolve && ctx.Err() == nil {
			lctx, cancel := context.WithTimeout(ctx, time.Second)
			names, err := net.DefaultResolver.LookupAddr(lctx, hop.Address)
			cancel()
			if err == nil && len(names) > 0 {
				hop.Name = strings.TrimSuffix(names[0], ".")
			}
		}
	}
	return hop
}

// traceProber sends probes and reads the answers to them.
type traceProber interface {
	// send sends probe seq with the given TTL.
	send(seq, ttl int) error
	// read passes on answers to our probes until the prober is closed.
	read(out chan<- traceReply)
	Close() error
}

// traceOpen opens the prober for mode ("" tries ICMP, then UDP when ICMP is
// not permitted) and returns the mode it got.
func traceOpen(dst netip.Addr, id int, mode string) (traceProber, string, error) {
	switch mode {
	case TraceICMP:
		p, err := traceListen(dst, id)
		if err != nil {
			return nil, TraceICMP, err
		}
		return p, TraceICMP, nil
	case TraceUDP:
		p, err := traceListenUDP(dst, id)
		if err != nil {
			return nil, TraceUDP, err
		}
		return p, TraceUDP, nil
	case "":
		p, err := traceListen(dst, id)
		if err == nil {
			return p, TraceICMP, nil
		}
		if Classify(err) != ReasonPermission {
			return nil, TraceICMP, err
		}
		u, uerr := traceListenUDP(dst, id)
		if uerr != nil {
			return nil, TraceICMP, fmt.Errorf("%w (UDP probes: %v)", err, uerr)
		}
		return u, TraceUDP, nil
	}
	return nil, mode, fmt.Errorf("unknown traceroute mode %q (want %s or %s)", mode, TraceICMP, TraceUDP)
}

// traceConn is a raw ICMP socket for one address family.
type traceConn struct {
	*icmp.PacketConn
	v6  bool
	dst netip.Addr
	id  int
}

func traceListen(dst netip.Addr, id int) (*traceConn, error) {
	if dst.Is4() {
		c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return nil, fmt.Errorf("raw ICMP socket: %w", err)
		}
		var f ipv4.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv4.ICMPTypeEchoReply)
		f.Accept(ipv4.ICMPTypeTimeExceeded)
		f.Accept(ipv4.ICMPTypeDestinationUnreachable)
		_ = c.IPv4PacketConn().SetICMPFilter(&f) // an optimisation; replies are matched anyway
		return &traceConn{PacketConn: c, dst: dst, id: id}, nil
	}
	c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("raw ICMPv6 socket: %w", err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeEchoReply)
	f.Accept(ipv6.ICMPTypeTimeExceeded)
	f.Accept(ipv6.ICMPTypeDestinationUnreachable)
	_ = c.IPv6PacketConn().SetICMPFilter(&f)
	return &traceConn{PacketConn: c, v6: true, dst: dst, id: id}, nil
}

func (c *traceConn) send(seq, ttl int) error {
	msg := icmp.Message{Code: 0, Body: &icmp.Echo{ID: c.id, Seq: seq, Data: []byte(tracePayload)}}
	if c.v6 {
		msg.Type = ipv6.ICMPTypeEchoRequest
		if err := c.IPv6PacketConn().SetHopLimit(ttl); err != nil {
			return err
		}
	} else {
		msg.Type = ipv4.ICMPTypeEcho
		if err := c.IPv4PacketConn().SetTTL(ttl); err != nil {
			return err
		}
	}
	b, err := msg.Marshal(nil) // the kernel fills in the ICMPv6 checksum
	if err != nil {
		return err
	}
	_, err = c.WriteTo(b, &net.IPAddr{IP: c.dst.AsSlice(), Zone: c.dst.Zone()})
	return err
}

// read reads ICMP packets until c is closed and passes on the answers to our
// probes (echo id) about dst.
func (c *traceConn) read(out chan<- traceReply) {
	dst, id := c.dst, c.id
	proto := 1 // ICMPv4
	if c.v6 {
		proto = 58
	}
	buf := make([]byte, 1500)
	for {
		n, peer, err := c.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		at := time.Now()
		from := traceAddr(peer)
		msg, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		r := traceReply{from: from, at: at, seq: -1}
		switch body := msg.Body.(type) {
		case *icmp.Echo:
			if (msg.Type == ipv4.ICMPTypeEchoReply || msg.Type == ipv6.ICMPTypeEchoReply) &&
				body.ID == id && from == dst {
				r.seq, r.final = body.Seq, true
			}
		case *icmp.TimeExceeded:
			r.seq = traceInner(body.Data, c.v6, dst, id)
		case *icmp.DstUnreach:
			r.seq = traceInner(body.Data, c.v6, dst, id)
			r.unreachable = traceUnreachKind(c.v6, msg.Code)
		}
		if r.seq < 0 {
			continue
		}
		select {
		case out <- r:
		default: // the tracer stopped listening; drop
		}
	}
}

func traceAddr(a net.Addr) netip.Addr {
	if ia, ok := a.(*net.IPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ia.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// traceInner returns the sequence number of our echo request quoted in an
// ICMP error (original IP header + at least 8 bytes of ICMP), or -1.
func traceInner(data []byte, v6 bool, dst netip.Addr, id int) int {
	var icmpPart []byte
	if v6 {
		if len(data) < 40+8 || data[0]>>4 != 6 || data[6] != 58 {
			return -1
		}
		if a, _ := netip.AddrFromSlice(data[24:40]); a != dst {
			return -1
		}
		icmpPart = data[40:]
		if icmpPart[0] != byte(ipv6.ICMPTypeEchoRequest) {
			return -1
		}
	} else {
		if len(data) < 20 || data[0]>>4 != 4 {
			return -1
		}
		ihl := int(data[0]&0x0f) * 4
		if ihl < 20 || len(data) < ihl+8 || data[9] != 1 {
			return -1
		}
		if a, _ := netip.AddrFromSlice(data[16:20]); a != dst {
			return -1
		}
		icmpPart = data[ihl:]
		if icmpPart[0] != byte(ipv4.ICMPTypeEcho) {
			return -1
		}
	}
	if int(icmpPart[4])<<8|int(icmpPart[5]) != id {
		return -1
	}
	return int(icmpPart[6])<<8 | int(icmpPart[7])
}

func traceUnreachKind(v6 bool, code int) string {
	if v6 {
		switch code {
		case 0:
			return "network"
		case 1:
			return "prohibited"
		case 3:
			return "host"
		case 4:
			return "port"
		}
	} else {
		switch code {
		case 0, 6, 11:
			return "network"
		case 1, 7, 12:
			return "host"
		case 2:
			return "protocol"
		case 3:
			return "port"
		case 9, 10, 13:
			return "prohibited"
		}
	}
	return fmt.Sprintf("code %d", code)
}
