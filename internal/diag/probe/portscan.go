package probe

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netops-dev/netops/internal/config"
)

// Defaults used when a rule leaves a field unset.
const (
	scanDefaultTimeout  = time.Second // per connect attempt
	scanDefaultMaxHosts = 256         // addresses in a network target
	// scanMaxWorkers bounds the connects in flight in one scan.
	scanMaxWorkers = 1024
	// scanFDMargin is how many file descriptors a scan leaves to the rest of
	// the process (other checks, the state database, logs).
	scanFDMargin = 128
	// A connect that fails for a local resource (EMFILE, EADDRNOTAVAIL,
	// ENOBUFS...) is tried again up to scanResourceRetries times, waiting
	// scanResourceBackoff, then twice as long each time.
	scanResourceRetries = 5
	scanResourceBackoff = 20 * time.Millisecond
	// scanListMax is how many ports or hosts a message lists before "...".
	scanListMax = 10
)

// Port sets named in a PortSpec, as nmap ranks them (nmap-services frequency,
// `nmap --top-ports 100|1000`).
const (
	scanTop100 = "" +
		"7,9,13,21-23,25-26,37,53,79-81,88,106,110-111,113,119,135,139,143-144,179,199,389,427," +
		"443-445,465,513-515,543-544,548,554,587,631,646,873,990,993,995,1025-1029,1110,1433,1720," +
		"1723,1755,1900,2000-2001,2049,2121,2717,3000,3128,3306,3389,3986,4899,5000,5009,5051,5060," +
		"5101,5190,5357,5432,5631,5666,5800,5900,6000-6001,6646,7070,8000,8008-8009,8080-8081,8443," +
		"8888,9100,9999-10000,32768,49152-49157"
	scanTop1000 = "" +
		"1,3-4,6-7,9,13,17,19-26,30,32-33,37,42-43,49,53,70,79-85,88-90,99-100,106,109-111,113,119," +
		"125,135,139,143-144,146,161,163,179,199,211-212,222,254-256,259,264,280,301,306,311,340," +
		"366,389,406-407,416-417,425,427,443-445,458,464-465,481,497,500,512-515,524,541,543-545," +
		"548,554-555,563,587,593,616-617,625,631,636,646,648,666-668,683,687,691,700,705,711,714," +
		"720,722,726,749,765,777,783,787,800-801,808,843,873,880,888,898,900-903,911-912,981,987," +
		"990,992-993,995,999-1002,1007,1009-1011,1021-1100,1102,1104-1108,1110-1114,1117,1119," +
		"1121-1124,1126,1130-1132,1137-1138,1141,1145,1147-1149,1151-1152,1154,1163-1166,1169," +
		"1174-1175,1183,1185-1187,1192,1198-1199,1201,1213,1216-1218,1233-1234,1236,1244,1247-1248," +
		"1259,1271-1272,1277,1287,1296,1300-1301,1309-1311,1322,1328,1334,1352,1417,1433-1434,1443," +
		"1455,1461,1494,1500-1501,1503,1521,1524,1533,1556,1580,1583,1594,1600,1641,1658,1666," +
		"1687-1688,1700,1717-1721,1723,1755,1761,1782-1783,1801,1805,1812,1839-1840,1862-1864,1875," +
		"1900,1914,1935,1947,1971-1972,1974,1984,1998-2010,2013,2020-2022,2030,2033-2035,2038," +
		"2040-2043,2045-2049,2065,2068,2099-2100,2103,2105-2107,2111,2119,2121,2126,2135,2144," +
		"2160-2161,2170,2179,2190-2191,2196,2200,2222,2251,2260,2288,2301,2323,2366,2381-2383," +
		"2393-2394,2399,2401,2492,2500,2522,2525,2557,2601-2602,2604-2605,2607-2608,2638,2701-2702," +
		"2710,2717-2718,2725,2800,2809,2811,2869,2875,2909-2910,2920,2967-2968,2998,3000-3001,3003," +
		"3005-3007,3011,3013,3017,3030-3031,3052,3071,3077,3128,3168,3211,3221,3260-3261,3268-3269," +
		"3283,3300-3301,3306,3322-3325,3333,3351,3367,3369-3372,3389-3390,3404,3476,3493,3517,3527," +
		"3546,3551,3580,3659,3689-3690,3703,3737,3766,3784,3800-3801,3809,3814,3826-3828,3851,3869," +
		"3871,3878,3880,3889,3905,3914,3918,3920,3945,3971,3986,3995,3998,4000-4006,4045,4111," +
		"4125-4126,4129,4224,4242,4279,4321,4343,4443-4446,4449,4550,4567,4662,4848,4899-4900,4998," +
		"5000-5004,5009,5030,5033,5050-5051,5054,5060-5061,5080,5087,5100-5102,5120,5190,5200,5214," +
		"5221-5222,5225-5226,5269,5280,5298,5357,5405,5414,5431-5432,5440,5500,5510,5544,5550,5555," +
		"5560,5566,5631,5633,5666,5678-5679,5718,5730,5800-5802,5810-5811,5815,5822,5825,5850,5859," +
		"5862,5877,5900-5904,5906-5907,5910-5911,5915,5922,5925,5950,5952,5959-5963,5987-5989," +
		"5998-6007,6009,6025,6059,6100-6101,6106,6112,6123,6129,6156,6346,6389,6502,6510,6543,6547," +
		"6565-6567,6580,6646,6666-6669,6689,6692,6699,6779,6788-6789,6792,6839,6881,6901,6969," +
		"7000-7002,7004,7007,7019,7025,7070,7100,7103,7106,7200-7201,7402,7435,7443,7496,7512,7625," +
		"7627,7676,7741,7777-7778,7800,7911,7920-7921,7937-7938,7999-8002,8007-8011,8021-8022,8031," +
		"8042,8045,8080-8090,8093,8099-8100,8180-8181,8192-8194,8200,8222,8254,8290-8292,8300,8333," +
		"8383,8400,8402,8443,8500,8600,8649,8651-8652,8654,8701,8800,8873,8888,8899,8994,9000-9003," +
		"9009-9011,9040,9050,9071,9080-9081,9090-9091,9099-9103,9110-9111,9200,9207,9220,9290,9415," +
		"9418,9485,9500,9502-9503,9535,9575,9593-9595,9618,9666,9876-9878,9898,9900,9917,9929," +
		"9943-9944,9968,9998-10004,10009-10010,10012,10024-10025,10082,10180,10215,10243,10566," +
		"10616-10617,10621,10626,10628-10629,10778,11110-11111,11967,12000,12174,12265,12345,13456," +
		"13722,13782-13783,14000,14238,14441-14442,15000,15002-15004,15660,15742,16000-16001,16012," +
		"16016,16018,16080,16113,16992-16993,17877,17988,18040,18101,18988,19101,19283,19315,19350," +
		"19780,19801,19842,20000,20005,20031,20221-20222,20828,21571,22939,23502,24444,24800," +
		"25734-25735,26214,27000,27352-27353,27355-27356,27715,28201,30000,30718,30951,31038,31337," +
		"32768-32785,33354,33899,34571-34573,35500,38292,40193,40911,41511,42510,44176,44442-44443," +
		"44501,45100,48080,49152-49161,49163,49165,49167,49175-49176,49400,49999-50003,50006,50300," +
		"50389,50500,50636,50800,51103,51493,52673,52822,52848,52869,54045,54328,55055-55056,55555," +
		"55600,56737-56738,57294,57797,58080,60020,60443,61532,61900,62078,63331,64623,64680,65000," +
		"65129,65389"
)

// Port states of a TCP connect scan.
const (
	PortOpen     = "open"     // the connect succeeded
	PortClosed   = "closed"   // the host answered with a reset (connection refused)
	PortFiltered = "filtered" // no answer within the timeout, an ICMP unreachable or a local firewall reject
)

// portState is a scan outcome; 0 means "not scanned".
type portState uint8

const (
	stateNone portState = iota
	stateOpen
	stateClosed
	stateFiltered
)

// PortscanDetails is the Details of a portscan result.
type PortscanDetails struct {
	Network      string         `json:"network,omitempty"` // the CIDR, for a network target
	HostsScanned int            `json:"hosts_scanned"`
	PortsPerHost int            `json:"ports_per_host"`
	Open         []PortscanHost `json:"open"` // hosts with open ports, sorted by address
	Counts       PortscanCounts `json:"counts"`
	Concurrency  int            `json:"concurrency"` // connects in flight at most
}

// PortscanHost lists the open ports of one host.
type PortscanHost struct {
	Address string `json:"address"`
	Ports   []int  `json:"ports"` // sorted
}

// PortscanCounts counts port states over every host scanned.
type PortscanCounts struct {
	Open     int `json:"open"`
	Closed   int `json:"closed"`
	Filtered int `json:"filtered"`
}

// Portscan runs a TCP connect scan of the rule's ports on the target host, or
// on every address of a network target (at most r.MaxHosts addresses, default
// 256; the network and broadcast addresses of an IPv4 network are skipped).
// The ports are the union of r.Ports, r.Port, r.ExpectOpen and r.MustBeClosed,
// or top100 when none is set; "top100" and "top1000" are nmap's most common
// TCP ports. Each port is open (connected), closed (reset) or filtered (no
// answer within r.Timeout, default 1s, after r.Retries more attempts). A
// connect that fails for a local resource (EMFILE, EADDRNOTAVAIL, ENOBUFS) is
// retried after a backoff and, if that persists, ends the scan as UNKNOWN
// (reason resource): it is never reported as a port state.
//
// Up to 1024 connects are in flight at once, fewer when the open-file limit
// (RLIMIT_NOFILE) is lower: the scan first raises the soft limit to the hard
// limit (Go already does so at start-up, so this is normally a no-op) and
// leaves 128 descriptors to the rest of the process.
//
// Assertions: a port of r.ExpectOpen that is not open is CRITICAL (mismatch);
// a port of r.MustBeClosed that is open is CRITICAL (policy). Without them the
// result is OK and lists the open ports. Metrics: open (count) and scan_time
// (seconds); Details is a PortscanDetails.
func Portscan(ctx context.Context, t Target, r config.Rule) Result {
	return portscanRun(ctx, t, r, nil)
}

// portscanRun is Portscan with a hook to adjust the scanner (tests).
func portscanRun(ctx context.Context, t Target, r config.Rule, tune func(*portScanner)) Result {
	ports, expectOpen, mustClosed, err := scanPortsOf(r)
	if err != nil {
		return Failf(Unknown, ReasonError, "%v", err)
	}
	hosts, network, fail, ok := scanHostsOf(ctx, t, r.MaxHosts)
	if !ok {
		return fail
	}
	s := newPortScanner(r, len(hosts)*len(ports))
	if tune != nil {
		tune(s)
	}
	start := time.Now()
	states, err := s.scan(ctx, hosts, ports)
	elapsed := time.Since(start)
	if err != nil {
		return scanErrorResult(ctx, err, states, elapsed)
	}

	det := PortscanDetails{Network: network, HostsScanned: len(hosts), PortsPerHost: len(ports),
		Concurrency: s.workers, Open: []PortscanHost{}}
	isOpen := func(h, p int) bool { return states[p*len(hosts)+h] == stateOpen }
	portIndex := func(port int) int {
		i, _ := slices.BinarySearch(ports, uint16(port)) // every asserted port is scanned
		return i
	}
	for _, st := range states {
		switch st {
		case stateOpen:
			det.Counts.Open++
		case stateClosed:
			det.Counts.Closed++
		case stateFiltered:
			det.Counts.Filtered++
		}
	}
	for h, ip := range hosts {
		var open []int
		for p, port := range ports {
			if isOpen(h, p) {
				open = append(open, int(port))
			}
		}
		if len(open) > 0 {
			det.Open = append(det.Open, PortscanHost{Address: ip.String(), Ports: open})
		}
	}

	res := Result{Details: det}
	res.AddMetric("open", float64(det.Counts.Open), "")
	res.AddMetric("scan_time", elapsed.Seconds(), "s")
	where := hosts[0].String()
	if network != "" {
		where = fmt.Sprintf("%d hosts of %s", len(hosts), network)
	}
	summary := fmt.Sprintf("%d ports scanned on %s in %s: %d open, %d closed, %d filtered",
		len(ports), where, FormatSeconds(elapsed.Seconds()), det.Counts.Open, det.Counts.Closed, det.Counts.Filtered)

	// Assertions: must-be-closed (a security policy) first, then expected-open.
	var policy, mismatch []string
	for h, ip := range hosts {
		on := ""
		if network != "" {
			on = " on " + ip.String()
		}
		for _, port := range mustClosed {
			if isOpen(h, portIndex(port)) {
				policy = append(policy, fmt.Sprintf("port %d is open%s but must be closed", port, on))
			}
		}
		for _, port := range expectOpen {
			if st := states[portIndex(port)*len(hosts)+h]; st != stateOpen {
				mismatch = append(mismatch, fmt.Sprintf("port %d is %s%s but expected open", port, st, on))
			}
		}
	}
	switch {
	case len(policy) > 0:
		res.Status, res.Reason = Critical, ReasonPolicy
		res.Message = scanJoin(append(policy, mismatch...)) + " (" + summary + ")"
	case len(mismatch) > 0:
		res.Status, res.Reason = Critical, ReasonMismatch
		res.Message = scanJoin(mismatch) + " (" + summary + ")"
	default:
		res.Message = summary + scanOpenPhrase(det.Open, network != "")
	}
	return res
}

func (s portState) String() string {
	switch s {
	case stateOpen:
		return PortOpen
	case stateClosed:
		return PortClosed
	case stateFiltered:
		return PortFiltered
	}
	return "not scanned"
}

// scanOpenPhrase lists open ports for the OK message.
func scanOpenPhrase(open []PortscanHost, network bool) string {
	if len(open) == 0 {
		return ""
	}
	var items []string
	for _, h := range open {
		ports := make([]string, len(h.Ports))
		for i, p := range h.Ports {
			ports[i] = strconv.Itoa(p)
		}
		if network {
			items = append(items, h.Address+" "+strings.Join(ports, ","))
		} else {
			items = append(items, ports...)
		}
	}
	return "; open: " + scanJoin(items)
}

// scanJoin joins items with ", ", listing at most scanListMax of them.
func scanJoin(items []string) string {
	if len(items) > scanListMax {
		return strings.Join(items[:scanListMax], ", ") + fmt.Sprintf(" and %d more", len(items)-scanListMax)
	}
	return strings.Join(items, ", ")
}

// scanErrorResult reports a scan that could not finish: a scanner error
// (UNKNOWN, reason resource or error) or the deadline (UNKNOWN, timeout).
func scanErrorResult(ctx context.Context, err error, states []portState, elapsed time.Duration) Result {
	done := 0
	for _, st := range states {
		if st != stateNone {
			done++
		}
	}
	progress := fmt.Sprintf("%d of %d probes done in %s", done, len(states), FormatSeconds(elapsed.Seconds()))
	if ctx.Err() != nil {
		return Failf(Unknown, ReasonTimeout, "scan interrupted (%v): %s", ctx.Err(), progress)
	}
	reason := Classify(err)
	if reason == ReasonResource {
		return Failf(Unknown, ReasonResource,
			"scanner error, not a port state: %v (%s); raise the open-file limit (ulimit -n) or free local ports, then scan again", err, progress)
	}
	return Failf(Unknown, ReasonError, "scanner error, not a port state: %v (%s)", err, progress)
}

// scanPortsOf returns the sorted ports to scan and the ports asserted open
// and closed.
func scanPortsOf(r config.Rule) (ports []uint16, expectOpen, mustClosed []int, err error) {
	set := make([]bool, 65536)
	given := false
	add := func(key string, spec config.PortSpec) ([]int, error) {
		if strings.TrimSpace(string(spec)) == "" {
			return nil, nil
		}
		list, err := scanExpand(spec)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		for _, p := range list {
			set[p] = true
		}
		given = true
		return list, nil
	}
	if _, err := add("ports", r.Ports); err != nil {
		return nil, nil, nil, err
	}
	if expectOpen, err = add("expect_open", r.ExpectOpen); err != nil {
		return nil, nil, nil, err
	}
	if mustClosed, err = add("must_be_closed", r.MustBeClosed); err != nil {
		return nil, nil, nil, err
	}
	if r.Port != 0 {
		if r.Port < 1 || r.Port > 65535 {
			return nil, nil, nil, fmt.Errorf("invalid port %d: must be between 1 and 65535", r.Port)
		}
		set[r.Port] = true
		given = true
	}
	if !given {
		if _, err := add("ports", config.PortsTop100); err != nil {
			return nil, nil, nil, err
		}
	}
	for p, in := range set {
		if in {
			ports = append(ports, uint16(p))
		}
	}
	return ports, expectOpen, mustClosed, nil
}

// scanExpand returns the sorted, distinct ports of spec, with the named sets
// expanded.
func scanExpand(spec config.PortSpec) ([]int, error) {
	ranges, named, err := spec.Parse()
	if err != nil {
		return nil, err
	}
	for _, n := range named {
		list := scanTop100
		if n == config.PortsTop1000 {
			list = scanTop1000
		}
		more, _, err := config.PortSpec(list).Parse()
		if err != nil {
			return nil, fmt.Errorf("built-in port set %s: %w", n, err)
		}
		ranges = append(ranges, more...)
	}
	var out []int
	for _, rg := range ranges {
		for p := rg.First; p <= rg.Last; p++ {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// scanHostsOf returns the addresses to probe: every address of a network
// target (CIDR) but the network and broadcast addresses of an IPv4 network of
// 4 addresses or more, or the one address of a host. A network with more
// addresses than maxHosts (default 256) is refused: UNKNOWN, reason error.
// network is the canonical CIDR, "" for a single host.
func scanHostsOf(ctx context.Context, t Target, maxHosts int) (hosts []netip.Addr, network string, fail Result, ok bool) {
	pfx, err := netip.ParsePrefix(strings.TrimSpace(t.Address))
	if err != nil {
		if t.Type == config.TargetNetwork {
			return nil, "", Failf(Unknown, ReasonError, "network target %q is not a CIDR like 192.0.2.0/24: %v", t.Address, err), false
		}
		ip, fail, ok := lookupTargetIP(ctx, t)
		if !ok {
			return nil, "", fail, false
		}
		return []netip.Addr{ip}, "", Result{}, true
	}
	pfx = pfx.Masked()
	if maxHosts <= 0 {
		maxHosts = scanDefaultMaxHosts
	}
	hostBits := pfx.Addr().BitLen() - pfx.Bits()
	if hostBits >= 62 || uint64(1)<<hostBits > uint64(maxHosts) {
		count := "2^" + strconv.Itoa(hostBits)
		if hostBits < 62 {
			count = strconv.FormatUint(uint64(1)<<hostBits, 10)
		}
		return nil, "", Failf(Unknown, ReasonError, "%s has %s addresses, more than max_hosts %d; raise max_hosts to scan it",
			pfx, count, maxHosts), false
	}
	n := 1 << hostBits
	first, last := 0, n-1
	if pfx.Addr().Is4() && hostBits >= 2 {
		first, last = 1, n-2 // network and broadcast addresses
	}
	a := pfx.Addr()
	for i := 0; i <= last; i++ {
		if i >= first {
			hosts = append(hosts, a)
		}
		a = a.Next()
	}
	return hosts, pfx.String(), Result{}, true
}

// scanDialFunc makes one TCP connect attempt to ap and closes the connection:
// nil means the port accepted it. Errors wrap the errno (ECONNREFUSED, EMFILE,
// ...) or os.ErrDeadlineExceeded. Tests inject failures through it.
type scanDialFunc func(ctx context.Context, ap netip.AddrPort) error

// portScanner is a fixed pool of workers that take the next (host, port) from
// a shared counter and connect to it.
type portScanner struct {
	dial            scanDialFunc
	retries         int // more attempts for a filtered port
	workers         int
	resourceRetries int
	resourceBackoff time.Duration
}

// newPortScanner sizes a scanner of jobs connects for rule r.
func newPortScanner(r config.Rule, jobs int) *portScanner {
	timeout := r.Timeout.D()
	if timeout <= 0 {
		timeout = scanDefaultTimeout
	}
	return &portScanner{
		dial: func(ctx context.Context, ap netip.AddrPort) error {
			return scanConnectTCP(ctx, ap, timeout)
		},
		retries:         max(r.Retries, 0),
		workers:         max(1, min(scanMaxWorkers, jobs, scanFDBudget())),
		resourceRetries: scanResourceRetries,
		resourceBackoff: scanResourceBackoff,
	}
}

// scan probes every (host, port) pair. states[p*len(hosts)+h] is the state of
// ports[p] on hosts[h] (hosts vary fastest, so a network scan spreads over the
// hosts). A scanner error stops the scan and is returned with the states found
// so far; so is ctx's error.
func (s *portScanner) scan(ctx context.Context, hosts []netip.Addr, ports []uint16) ([]portState, error) {
	total := len(hosts) * len(ports)
	states := make([]portState, total)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(s.workers, total) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= total {
					return
				}
				ap := netip.AddrPortFrom(hosts[i%len(hosts)], ports[i/len(hosts)])
				st, err := s.probePort(ctx, ap)
				if err != nil {
					cancel(err)
					return
				}
				states[i] = st // each index is written by one worker only
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return states, err
	}
	return states, nil
}

// probePort finds the state of one port, trying a filtered port s.retries
// more times.
func (s *portScanner) probePort(ctx context.Context, ap netip.AddrPort) (portState, error) {
	for attempt := 0; ; attempt++ {
		st, err := s.connect(ctx, ap)
		if err != nil || st != stateFiltered || attempt >= s.retries {
			return st, err
		}
	}
}

// connect makes one connect attempt, retrying local resource errors after a
// backoff; an error it returns is a scanner error, not a port state.
func (s *portScanner) connect(ctx context.Context, ap netip.AddrPort) (portState, error) {
	backoff := s.resourceBackoff
	for try := 0; ; try++ {
		err := s.dial(ctx, ap)
		if err == nil {
			return stateOpen, nil
		}
		if ctx.Err() != nil {
			return stateNone, context.Cause(ctx)
		}
		switch Classify(err) {
		case ReasonRefused:
			return stateClosed, nil
		case ReasonTimeout, ReasonUnreachable, ReasonPermission:
			// No answer, an ICMP unreachable, or a local firewall rule
			// rejecting the packet: the port is filtered.
			return stateFiltered, nil
		case ReasonResource:
			if try >= s.resourceRetries {
				return stateNone, fmt.Errorf("connect %s: still failing after %d retries: %w", ap, try, err)
			}
			if !sleepCtx(ctx, backoff) {
				return stateNone, context.Cause(ctx)
			}
			backoff *= 2
		default:
			return stateNone, fmt.Errorf("connect %s: %w", ap, err)
		}
	}
}
