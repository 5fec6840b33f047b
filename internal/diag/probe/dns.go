package probe

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/netops-dev/netops/internal/config"
)

// DNSDetails is the Details of a dns check.
type DNSDetails struct {
	Name    string   `json:"name"`              // the name (or IP for PTR) looked up
	Type    string   `json:"type"`              // record type: A, AAAA, CNAME, MX, TXT, NS, PTR, SRV
	Server  string   `json:"server"`            // "system" or the host:port asked
	Answers []string `json:"answers,omitempty"` // sorted
	// Missing lists expected answers (rule.Answers) that were not returned.
	Missing []string `json:"missing,omitempty"`
}

// dnsShownAnswers is how many answers the one-line message lists.
const dnsShownAnswers = 5

// DNS resolves the target's host for rule.RecordType (A by default) and
// measures the lookup time (metric rtt). An IP address target gets a PTR
// lookup instead of A/AAAA. With rule.Server (host[:port], port 53 by default)
// the query goes to that server (UDP, TCP when the answer is truncated) with
// Go's resolver; /etc/hosts is still consulted first for A, AAAA and PTR, as
// the Go resolver always does. Without it the system resolver is used.
//
// Answers are sorted. MX answers read "pref host", SRV "priority weight port
// target"; TXT answers are the record's strings joined. Every answer in
// rule.Answers must be present (case-insensitive, trailing dots ignored; for
// MX and SRV the host alone is enough), else the result is CRITICAL mismatch.
// NXDOMAIN (nxdomain), no answer in time (timeout), and other failures such
// as SERVFAIL or no records of the type (dns) are told apart.
func DNS(ctx context.Context, t Target, r config.Rule) Result {
	name := Host(t.Address)
	if name == "" {
		return Failf(Unknown, ReasonError, "dns: target address %q has no host", t.Address)
	}
	typ := strings.ToUpper(r.RecordType)
	ip, isIP := dnsParseIP(name)
	switch {
	case isIP && (typ == "" || typ == "A" || typ == "AAAA" || typ == "PTR"):
		typ, name = "PTR", ip.String()
	case isIP:
		return Failf(Unknown, ReasonError, "record type %s needs a host name; target %s is an IP address (use record_type PTR)", typ, name)
	case typ == "":
		typ = "A"
	case typ == "PTR":
		return Failf(Unknown, ReasonError, "record type PTR needs an IP address; target %s is a name", name)
	}
	if !slices.Contains(config.RecordTypes(), typ) {
		return Failf(Unknown, ReasonError, "unknown record type %q (want one of %s)", r.RecordType, strings.Join(config.RecordTypes(), ", "))
	}
	resolver, server := dnsResolverFor(r.Server)
	det := &DNSDetails{Name: name, Type: typ, Server: server}
	res := Result{Details: det}

	start := time.Now()
	answers, err := dnsLookup(ctx, resolver, typ, name)
	elapsed := time.Since(start)
	if err != nil && len(answers) == 0 {
		res = dnsFailure(ctx, res, resolver, start, err)
		if res.Reason != ReasonTimeout && res.Status != Unknown {
			// An answer came back (NXDOMAIN, SERVFAIL...): its time is real.
			res.Metrics = append([]Metric{{Name: MetricRTT, Value: elapsed.Seconds(), Unit: "s"}}, res.Metrics...)
		}
		return res
	}
	slices.SortFunc(answers, dnsCompareAnswers)
	det.Answers = answers
	res.AddMetric(MetricRTT, elapsed.Seconds(), "s")
	if len(answers) == 0 {
		return failResult(res, Critical, ReasonDNS, "no %s records for %s (%s)", typ, name, dnsServerPhrase(server))
	}

	for _, want := range r.Answers {
		if !slices.ContainsFunc(answers, func(got string) bool { return dnsAnswerMatches(typ, got, want) }) {
			det.Missing = append(det.Missing, want)
		}
	}
	shown := dnsAnswerList(typ, answers)
	if len(det.Missing) > 0 {
		return failResult(res, Critical, ReasonMismatch, "%s %s: missing expected %s; got %s",
			typ, name, dnsAnswerList(typ, det.Missing), shown)
	}
	res.Status = OK
	res.Message = fmt.Sprintf("%s %s: %s in %s", typ, name, shown, FormatSeconds(elapsed.Seconds()))
	return res
}

// dnsParseIP parses an IP literal (an IPv6 zone is dropped).
func dnsParseIP(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.WithZone("").Unmap(), true
}

// dnsResolverFor returns the resolver for server ("" = system) and its name.
func dnsResolverFor(server string) (*net.Resolver, string) {
	if server == "" {
		return &net.Resolver{}, "system"
	}
	addr := server
	if _, _, err := net.SplitHostPort(server); err != nil {
		addr = net.JoinHostPort(strings.Trim(server, "[]"), "53")
	}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}, addr
}

func dnsServerPhrase(server string) string {
	if server == "system" {
		return "system resolver"
	}
	return "server " + server
}

// dnsLookup asks for the records of type typ for name, as strings.
func dnsLookup(ctx context.Context, res *net.Resolver, typ, name string) ([]string, error) {
	var out []string
	switch typ {
	case "A", "AAAA":
		network := "ip4"
		if typ == "AAAA" {
			network = "ip6"
		}
		addrs, err := res.LookupNetIP(ctx, network, name)
		for _, a := range addrs {
			out = append(out, a.Unmap().String())
		}
		return out, err
	case "CNAME":
		c, err := res.LookupCNAME(ctx, name)
		if err != nil {
			return nil, err
		}
		// A name without a CNAME record resolves to itself.
		if dnsNorm(c) == dnsNorm(name) {
			return nil, nil
		}
		return []string{c}, nil
	case "MX":
		mxs, err := res.LookupMX(ctx, name)
		for _, mx := range mxs {
			out = append(out, strconv.Itoa(int(mx.Pref))+" "+mx.Host)
		}
		return out, err
	case "TXT":
		return res.LookupTXT(ctx, name)
	case "NS":
		nss, err := res.LookupNS(ctx, name)
		for _, ns := range nss {
			out = append(out, ns.Host)
		}
		return out, err
	case "PTR":
		return res.LookupAddr(ctx, name)
	case "SRV":
		_, srvs, err := res.LookupSRV(ctx, "", "", name)
		for _, s := range srvs {
			out = append(out, fmt.Sprintf("%d %d %d %s", s.Priority, s.Weight, s.Port, s.Target))
		}
		return out, err
	}
	return nil, fmt.Errorf("unknown record type %q", typ)
}

// dnsFailure reports a failed lookup. The Go and system resolvers report
// NXDOMAIN and "no records of this type" (NODATA) the same way (IsNotFound);
// a second lookup for the name's addresses tells them apart where it can:
// a name that has addresses exists, so the first answer was NODATA.
func dnsFailure(ctx context.Context, res Result, resolver *net.Resolver, start time.Time, err error) Result {
	det, _ := res.Details.(*DNSDetails)
	reason := Classify(err)
	var de *net.DNSError
	isDNSErr := errors.As(err, &de)
	switch {
	case reason == ReasonNXDomain && det != nil && det.Type != "PTR" && dnsNameExists(ctx, resolver, det.Type, det.Name):
		return failResult(res, Critical, ReasonDNS, "no %s records for %s (%s)", det.Type, det.Name, dnsServerPhrase(det.Server))
	case reason == ReasonNXDomain && det != nil:
		return failResult(res, Critical, reason, "%s does not exist (NXDOMAIN from %s)", det.Name, dnsServerPhrase(det.Server))
	case reason == ReasonTimeout && det != nil:
		return failResult(res, Critical, reason, "no answer for %s %s from %s%s", det.Type, det.Name, dnsServerPhrase(det.Server), deadlineWithin(ctx, start))
	case errors.Is(err, context.Canceled):
		return failResult(res, Unknown, ReasonError, "lookup cancelled")
	case isDNSErr && det != nil:
		why := de.Err
		if why == "server misbehaving" {
			why += " (SERVFAIL, REFUSED or a malformed answer)"
		}
		return failResult(res, StatusFor(ReasonDNS), ReasonDNS, "%s %s lookup failed: %s (%s)", det.Type, det.Name, why, dnsServerPhrase(det.Server))
	}
	return failResult(res, StatusFor(reason), reason, "lookup failed: %v", err)
}

// dnsNameExists reports whether name has address records (for an A lookup:
// IPv6 ones; for AAAA: IPv4 ones; else either).
func dnsNameExists(ctx context.Context, resolver *net.Resolver, typ, name string) bool {
	network := "ip"
	switch typ {
	case "A":
		network = "ip6"
	case "AAAA":
		network = "ip4"
	}
	addrs, err := resolver.LookupNetIP(ctx, network, name)
	return err == nil && len(addrs) > 0
}

// dnsCompareAnswers orders answers field by field, numeric fields (MX
// preference, SRV priority, weight and port) as numbers.
func dnsCompareAnswers(a, b string) int {
	fa, fb := strings.Fields(a), strings.Fields(b)
	for i := range min(len(fa), len(fb)) {
		na, errA := strconv.Atoi(fa[i])
		nb, errB := strconv.Atoi(fb[i])
		if errA == nil && errB == nil {
			if c := cmp.Compare(na, nb); c != 0 {
				return c
			}
			continue
		}
		if c := strings.Compare(fa[i], fb[i]); c != 0 {
			return c
		}
	}
	if c := cmp.Compare(len(fa), len(fb)); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

// dnsNorm lowercases a name or answer and drops a trailing dot.
func dnsNorm(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

// dnsAnswerMatches reports whether the answer got satisfies the expected
// want: equal after normalising (IP addresses compared as addresses), or for
// MX and SRV equal to the host part of the answer.
func dnsAnswerMatches(typ, got, want string) bool {
	g, w := dnsNorm(got), dnsNorm(want)
	if g == w {
		return true
	}
	if ga, err := netip.ParseAddr(g); err == nil {
		if wa, err := netip.ParseAddr(w); err == nil {
			return ga.Unmap() == wa.Unmap()
		}
	}
	if typ == "MX" || typ == "SRV" {
		f := strings.Fields(g)
		return len(f) > 0 && f[len(f)-1] == w
	}
	return false
}

// dnsAnswerList renders answers for a message: TXT answers quoted, at most
// dnsShownAnswers of them, then "(+N more)".
func dnsAnswerList(typ string, answers []string) string {
	shown := answers[:min(len(answers), dnsShownAnswers)]
	parts := make([]string, len(shown))
	for i, a := range shown {
		if typ == "TXT" {
			a = quoteSnippet([]byte(a), 80)
		}
		parts[i] = a
	}
	s := strings.Join(parts, ", ")
	if n := len(answers) - len(shown); n > 0 {
		s += fmt.Sprintf(" (+%d more)", n)
	}
	return s
}
