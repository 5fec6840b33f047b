package probe

import (
	"context"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/netops-dev/netops/internal/config"
)

// dnsTestServer is a tiny authoritative DNS server on 127.0.0.1 (UDP) for
// the zone "test." and one reverse name. The addresses in its answers are
// documentation addresses: answer data only, nothing connects to them.
//
//	ok.test.          A 192.0.2.7, 192.0.2.8; MX 10 mail.ok.test., 20 backup.ok.test.;
//	                  TXT "v=spf1 -all", "hello" "world"; NS ns1.ok.test.; no AAAA
//	www.ok.test.      CNAME ok.test.
//	_sip._tcp.ok.test. SRV 10 5 5060 sip.ok.test.
//	7.2.0.192.in-addr.arpa. PTR ok.test.
//	fail.test.        SERVFAIL
//	slow.test.        never answered
//	anything else     NXDOMAIN
func dnsTestServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp, ok := dnsTestAnswer(buf[:n]); ok {
				_, _ = pc.WriteTo(resp, from)
			}
		}
	})
	t.Cleanup(func() {
		pc.Close()
		wg.Wait()
	})
	return pc.LocalAddr().String()
}

func dnsTestAnswer(query []byte) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	name := strings.ToLower(q.Name.String())
	if name == "slow.test." {
		return nil, false
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired,
		RecursionAvailable: true}
	rr := func(typ dnsmessage.Type) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: q.Name, Type: typ, Class: dnsmessage.ClassINET, TTL: 60}
	}
	mustName := dnsmessage.MustNewName
	var answers []func(*dnsmessage.Builder) error
	switch {
	case name == "fail.test.":
		rh.RCode = dnsmessage.RCodeServerFailure
	case name == "ok.test." && q.Type == dnsmessage.TypeA:
		for _, a := range [][4]byte{{192, 0, 2, 8}, {192, 0, 2, 7}} {
			answers = append(answers, func(b *dnsmessage.Builder) error {
				return b.AResource(rr(dnsmessage.TypeA), dnsmessage.AResource{A: a})
			})
		}
	case name == "ok.test." && q.Type == dnsmessage.TypeMX:
		answers = append(answers, func(b *dnsmessage.Builder) error {
			return b.MXResource(rr(dnsmessage.TypeMX), dnsmessage.MXResource{Pref: 20, MX: mustName("backup.ok.test.")})
		}, func(b *dnsmessage.Builder) error {
			return b.MXResource(rr(dnsmessage.TypeMX), dnsmessage.MXResource{Pref: 10, MX: mustName("mail.ok.test.")})
		})
	case name == "ok.test." && q.Type == dnsmessage.TypeTXT:
		answers = append(answers, func(b *dnsmessage.Builder) error {
			return b.TXTResource(rr(dnsmessage.TypeTXT), dnsmessage.TXTResource{TXT: []string{"v=spf1 -all"}})
		}, func(b *dnsmessage.Builder) error {
			return b.TXTResource(rr(dnsmessage.TypeTXT), dnsmessage.TXTResource{TXT: []string{"hello ", "world"}})
		})
	case name == "ok.test." && q.Type == dnsmessage.TypeNS:
		answers = append(answers, func(b *dnsmessage.Builder) error {
			return b.NSResource(rr(dnsmessage.TypeNS), dnsmessage.NSResource{NS: mustName("ns1.ok.test.")})
		})
	case name == "ok.test.":
		// The name exists but has no records of this type (NODATA).
	case name == "www.ok.test.":
		answers = append(answers, func(b *dnsmessage.Builder) error {
			return b.CNAMEResource(rr(dnsmessage.TypeCNAME), dnsmessage.CNAMEResource{CNAME: mustName("ok.test.")})
		})
		if q.Type == dnsmessage.TypeA {
			answers = append(answers, func(b *dnsmessage.Builder) error {
				h := rr(dnsmessage.TypeA)
				h.Name = mustName("ok.test.")
				return b.AResource(h, dnsmessage.AResource{A: [4]byte{192, 0, 2, 7}})
			})
		}
	case name == "_sip._tcp.ok.test." && q.Type == dnsmessage.TypeSRV:
		answers = append(answers, func(b *dnsmessage.Builder) error {
			return b.SRVResource(rr(dnsmessage.TypeSRV), dnsmessage.SRVResource{Priority: 10, Weight: 5, Port: 5060,
				Target: mustName("sip.ok.test.")})
		})
	case name == "7.2.0.192.in-addr.arpa." && q.Type == dnsmessage.TypePTR:
		answers = append(answers, func(b *dnsmessage.Builder) error {
			return b.PTRResource(rr(dnsmessage.TypePTR), dnsmessage.PTRResource{PTR: mustName("ok.test.")})
		})
	default:
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	if err := b.StartQuestions(); err != nil {
		return nil, false
	}
	if err := b.Question(q); err != nil {
		return nil, false
	}
	if err := b.StartAnswers(); err != nil {
		return nil, false
	}
	for _, add := range answers {
		if err := add(&b); err != nil {
			return nil, false
		}
	}
	if len(answers) == 0 && rh.RCode == dnsmessage.RCodeSuccess {
		// NODATA: an SOA in the authority section, as real servers send.
		if err := b.StartAuthorities(); err != nil {
			return nil, false
		}
		soa := dnsmessage.ResourceHeader{Name: mustName("test."), Type: dnsmessage.TypeSOA, Class: dnsmessage.ClassINET, TTL: 60}
		if err := b.SOAResource(soa, dnsmessage.SOAResource{NS: mustName("ns1.ok.test."), MBox: mustName("admin.ok.test."),
			Serial: 1, Refresh: 60, Retry: 60, Expire: 60, MinTTL: 60}); err != nil {
			return nil, false
		}
	}
	msg, err := b.Finish()
	return msg, err == nil
}

func TestDNSServer(t *testing.T) {
	server := dnsTestServer(t)
	tests := []struct {
		name     string
		addr     string
		rule     config.Rule
		timeout  time.Duration
		status   Status
		reason   string
		msg      []string
		answers  []string
		budgetMs float64 // > 0: the message names this time budget (see checkBudget)
	}{
		{name: "A", addr: "ok.test", rule: config.Rule{RecordType: "A"}, status: OK,
			msg: []string{"A ok.test: 192.0.2.7, 192.0.2.8 in "}, answers: []string{"192.0.2.7", "192.0.2.8"}},
		{name: "default type is A", addr: "ok.test", status: OK, answers: []string{"192.0.2.7", "192.0.2.8"}},
		{name: "A from a URL target", addr: "https://ok.test:8443/x", status: OK, answers: []string{"192.0.2.7", "192.0.2.8"}},
		{name: "expected answers present", addr: "ok.test.", rule: config.Rule{Answers: []string{"192.0.2.7"}}, status: OK},
		{name: "expected answer missing", addr: "ok.test", rule: config.Rule{Answers: []string{"192.0.2.7", "192.0.2.9"}},
			status: Critical, reason: ReasonMismatch, msg: []string{"missing expected 192.0.2.9; got 192.0.2.7, 192.0.2.8"}},
		{name: "nxdomain", addr: "missing.test", status: Critical, reason: ReasonNXDomain,
			msg: []string{"missing.test does not exist (NXDOMAIN from server " + server + ")"}},
		{name: "timeout", addr: "slow.test", timeout: 300 * time.Millisecond, status: Critical, reason: ReasonTimeout,
			msg: []string{"no answer for A slow.test from server " + server + " within "}, budgetMs: 300},
		{name: "servfail", addr: "fail.test", status: Critical, reason: ReasonDNS, msg: []string{"server misbehaving"}},
		{name: "no AAAA records", addr: "ok.test", rule: config.Rule{RecordType: "AAAA"}, status: Critical,
			reason: ReasonDNS, msg: []string{"no AAAA records for ok.test"}},
		{name: "no SRV records", addr: "ok.test", rule: config.Rule{RecordType: "srv"}, status: Critical,
			reason: ReasonDNS, msg: []string{"no SRV records for ok.test"}},
		{name: "MX", addr: "ok.test", rule: config.Rule{RecordType: "MX", Answers: []string{"MAIL.ok.test", "20 backup.ok.test."}},
			status: OK, answers: []string{"10 mail.ok.test.", "20 backup.ok.test."}},
		{name: "MX missing", addr: "ok.test", rule: config.Rule{RecordType: "MX", Answers: []string{"mx.ok.test"}},
			status: Critical, reason: ReasonMismatch, msg: []string{"missing expected mx.ok.test"}},
		{name: "TXT", addr: "ok.test", rule: config.Rule{RecordType: "TXT", Answers: []string{"V=SPF1 -ALL"}},
			status: OK, msg: []string{`"hello world", "v=spf1 -all"`}, answers: []string{"hello world", "v=spf1 -all"}},
		{name: "NS", addr: "ok.test", rule: config.Rule{RecordType: "NS", Answers: []string{"ns1.ok.test"}}, status: OK,
			answers: []string{"ns1.ok.test."}},
		{name: "CNAME", addr: "www.ok.test", rule: config.Rule{RecordType: "CNAME", Answers: []string{"ok.test"}}, status: OK,
			answers: []string{"ok.test."}},
		{name: "SRV", addr: "_sip._tcp.ok.test", rule: config.Rule{RecordType: "SRV", Answers: []string{"sip.ok.test"}},
			status: OK, answers: []string{"10 5 5060 sip.ok.test."}},
		{name: "PTR for an IP target", addr: "192.0.2.7", status: OK, msg: []string{"PTR 192.0.2.7: ok.test."},
			answers: []string{"ok.test."}},
		{name: "MX for an IP target", addr: "192.0.2.7", rule: config.Rule{RecordType: "MX"}, status: Unknown,
			reason: ReasonError, msg: []string{"record type MX needs a host name"}},
		{name: "PTR for a name", addr: "ok.test", rule: config.Rule{RecordType: "PTR"}, status: Unknown,
			reason: ReasonError, msg: []string{"needs an IP address"}},
		{name: "unknown type", addr: "ok.test", rule: config.Rule{RecordType: "HINFO"}, status: Unknown, reason: ReasonError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rule := tc.rule
			rule.Server = server
			res := probeTestRun(t, DNS, Target{Name: "t", Type: "host", Address: tc.addr}, rule, tc.timeout)
			var metrics []string
			if tc.status == OK {
				metrics = []string{"rtt"}
			}
			if tc.reason == ReasonNXDomain || tc.reason == ReasonDNS {
				metrics = []string{"rtt"} // an answer came back: its time is reported
			}
			tcpTestCheck(t, res, tc.status, tc.reason, tc.msg, metrics)
			if tc.budgetMs > 0 {
				checkBudget(t, res.Message, tc.budgetMs)
			}
			if tc.answers != nil {
				d := res.Details.(*DNSDetails)
				if !slices.Equal(d.Answers, tc.answers) {
					t.Errorf("answers = %q, want %q", d.Answers, tc.answers)
				}
				if d.Server != server {
					t.Errorf("server = %q, want %q", d.Server, server)
				}
			}
		})
	}
}

func TestDNSSystemLocalhost(t *testing.T) {
	hosts, err := os.ReadFile("/etc/hosts")
	if err != nil || !dnsTestHostsHas(string(hosts), "127.0.0.1", "localhost") {
		t.Skip("/etc/hosts does not map localhost to 127.0.0.1")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	res := DNS(ctx, Target{Address: "localhost"}, config.Rule{RecordType: "A", Answers: []string{"127.0.0.1"}})
	tcpTestCheck(t, res, OK, "", []string{"A localhost: 127.0.0.1"}, []string{"rtt"})
	if d := res.Details.(*DNSDetails); d.Server != "system" {
		t.Errorf("server = %q", d.Server)
	}
}

func dnsTestHostsHas(hosts, ip, name string) bool {
	for line := range strings.Lines(hosts) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) > 1 && f[0] == ip && slices.Contains(f[1:], name) {
			return true
		}
	}
	return false
}

func TestDNSCancelled(t *testing.T) {
	server := dnsTestServer(t)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	done := make(chan Result, 1)
	go func() { done <- DNS(ctx, Target{Address: "slow.test"}, config.Rule{Server: server}) }()
	select {
	case res := <-done:
		if res.Status == OK {
			t.Fatalf("cancelled lookup is OK: %+v", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("probe ignored the cancelled context")
	}
}

func TestDNSAnswerMatches(t *testing.T) {
	tests := []struct {
		typ, got, want string
		ok             bool
	}{
		{"A", "192.0.2.7", "192.0.2.7", true},
		{"AAAA", "2001:db8::1", "2001:DB8:0::1", true},
		{"CNAME", "Web.Example.com.", "web.example.com", true},
		{"MX", "10 mail.example.com.", "mail.example.com", true},
		{"MX", "10 mail.example.com.", "10 mail.example.com", true},
		{"MX", "10 mail.example.com.", "20 mail.example.com", false},
		{"TXT", "v=spf1 -all", "V=SPF1 -ALL", true},
		{"TXT", "10 a", "a", false}, // host-part matching is for MX and SRV only
		{"SRV", "10 5 5060 sip.example.com.", "sip.example.com.", true},
	}
	for _, tc := range tests {
		if got := dnsAnswerMatches(tc.typ, tc.got, tc.want); got != tc.ok {
			t.Errorf("dnsAnswerMatches(%s, %q, %q) = %v, want %v", tc.typ, tc.got, tc.want, got, tc.ok)
		}
	}
	answers := []string{"100 z.example.", "20 b.example.", "3 c.example.", "20 a.example."}
	slices.SortFunc(answers, dnsCompareAnswers)
	if want := []string{"3 c.example.", "20 a.example.", "20 b.example.", "100 z.example."}; !slices.Equal(answers, want) {
		t.Errorf("sorted MX = %q, want %q", answers, want)
	}
	if _, ok := dnsParseIP("fe80::1%eth0"); !ok {
		t.Error("zoned IPv6 not parsed")
	}
	if a, _ := dnsParseIP("::ffff:192.0.2.1"); a != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("mapped address = %v", a)
	}
}
