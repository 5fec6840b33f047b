package diag

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/diag/probe"
)

// Step is one layer of an explanation.
type Step struct {
	Layer   string       `json:"layer"` // dns, icmp, tcp, tls, http, traceroute
	Status  probe.Status `json:"status"`
	Reason  string       `json:"reason,omitempty"`
	Message string       `json:"message"`
	Details any          `json:"details,omitempty"`
}

// Explanation is the layered diagnosis of a failing target: each layer from
// name resolution up to the application, and the first layer that failed.
type Explanation struct {
	Steps      []Step `json:"steps"`
	Conclusion string `json:"conclusion"`
}

// Explain diagnoses a target layer by layer: DNS (for names), ICMP
// reachability, TCP connect (when a port is known), TLS (https/tls), HTTP (http
// URLs), and a traceroute when the path itself looks broken (timeouts or
// unreachable). port is the port of the failing check, 0 when none.
func Explain(ctx context.Context, t config.Target, port int, probes map[string]probe.Func) *Explanation {
	pt := probe.Target{Name: t.Name, Type: t.Type, Address: t.Address}
	host := probe.Host(t.Address)
	if port == 0 {
		port, _ = probe.Port(t.Address)
	}
	scheme := ""
	if i := strings.Index(t.Address, "://"); i > 0 {
		scheme = t.Address[:i]
	}
	ex := &Explanation{}
	run := func(layer, check string, r config.Rule, timeout time.Duration) probe.Result {
		fn, ok := probes[check]
		if !ok {
			return probe.Failf(probe.Unknown, probe.ReasonError, "no %s probe", check)
		}
		r.Check = check
		if r.Timeout == 0 {
			r.Timeout = config.Duration(timeout)
		}
		cctx, cancel := context.WithTimeout(ctx, timeout+3*time.Second)
		defer cancel()
		res := fn(cctx, pt, r)
		ex.Steps = append(ex.Steps, Step{Layer: layer, Status: res.Status, Reason: res.Reason, Message: res.Message, Details: res.Details})
		return res
	}
	pathBroken := false
	if !isIP(host) && t.Type != config.TargetNetwork {
		res := run("dns", config.CheckDNS, config.Rule{RecordType: "A"}, 3*time.Second)
		if res.Status != probe.OK && res.Reason == probe.ReasonDNS {
			// No A records: maybe an IPv6-only name.
			res6 := run("dns", config.CheckDNS, config.Rule{RecordType: "AAAA"}, 3*time.Second)
			if res6.Status != probe.OK {
				ex.Conclusion = "name resolution fails (" + res.Reason + "): nothing above DNS can work; " + res.Message
				return ex
			}
		} else if res.Status != probe.OK {
			ex.Conclusion = "name resolution fails (" + res.Reason + "): nothing above DNS can work; " + res.Message
			return ex
		}
	}
	icmp := run("icmp", config.CheckICMP, config.Rule{Count: 2, Interval: config.Duration(200 * time.Millisecond)}, 2*time.Second)
	if icmp.Status == probe.Critical {
		pathBroken = true
	}
	var conclusion string
	if port > 0 {
		tcpTarget := config.Rule{Port: port}
		res := run("tcp", config.CheckTCP, tcpTarget, 3*time.Second)
		switch {
		case res.Status != probe.OK && res.Reason == probe.ReasonRefused:
			conclusion = "the host answers but nothing accepts connections on port " + strconv.Itoa(port) + ": start the service or fix the port"
		case res.Status != probe.OK && (res.Reason == probe.ReasonTimeout || res.Reason == probe.ReasonUnreachable):
			pathBroken = true
			if icmp.Status == probe.OK {
				conclusion = "the host answers ICMP but port " + strconv.Itoa(port) + " does not answer: a firewall probably drops it"
			} else {
				conclusion = "neither ICMP nor port " + strconv.Itoa(port) + " answer: the host is down or the path is broken"
			}
		case res.Status != probe.OK:
			conclusion = "TCP connect to port " + strconv.Itoa(port) + " fails: " + res.Message
		}
		if conclusion == "" && (scheme == "https" || scheme == "tls") {
			tls := run("tls", config.CheckTCP, config.Rule{Port: port, TLS: true}, 3*time.Second)
			if tls.Status != probe.OK {
				conclusion = "TCP works but the TLS handshake fails (" + tls.Reason + "): " + tls.Message
			}
		}
		if conclusion == "" && (scheme == "http" || scheme == "https") {
			h := run("http", config.CheckHTTP, config.Rule{}, 5*time.Second)
			if h.Status != probe.OK {
				conclusion = "the network path, TCP and TLS work; the HTTP answer is the problem: " + h.Message
			}
		}
	} else if icmp.Status == probe.Critical {
		conclusion = "the host does not answer ICMP echo: it is down, unreachable or filters ICMP"
	}
	if pathBroken {
		tr := run("traceroute", config.CheckTraceroute, config.Rule{Count: 30, Timeout: config.Duration(time.Second)}, 15*time.Second)
		if tr.Status != probe.OK && tr.Status != probe.Unknown {
			conclusion += "; traceroute: " + tr.Message
		}
	}
	if conclusion == "" {
		conclusion = "every layer answers now: the failure may be intermittent or specific to the rule's expectations"
	}
	ex.Conclusion = conclusion
	return ex
}

// ExplainFailures adds a layered explanation to every target of rep that has a
// failing check (WARNING or CRITICAL), concurrently.
func ExplainFailures(ctx context.Context, rep *Report, checks []Check, probes map[string]probe.Func) {
	var wg sync.WaitGroup
	for i := range rep.Targets {
		tr := &rep.Targets[i]
		if tr.Status != probe.Critical && tr.Status != probe.Warning {
			continue
		}
		var target config.Target
		port := 0
		for _, c := range checks {
			if c.Target.Name != tr.Name {
				continue
			}
			target = c.Target
			for _, cr := range tr.Checks {
				if cr.Rule == c.Rule.Name && cr.Status != probe.OK && port == 0 {
					port = c.Rule.Port
				}
			}
		}
		if target.Name == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr.Explain = Explain(ctx, target, port, probes)
		}()
	}
	wg.Wait()
}
