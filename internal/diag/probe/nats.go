package probe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/natsbackend"
)

// Metric names of the nats probe besides rtt.
const (
	MetricServers = "servers" // servers of the cluster the client knows (itself included)
	MetricStreams = "streams" // JetStream streams of the account
)

// NATSDetails is the Details of a nats check.
type NATSDetails struct {
	Server    string   `json:"server,omitempty"`
	Version   string   `json:"version,omitempty"`
	Cluster   string   `json:"cluster,omitempty"`
	Servers   []string `json:"servers,omitempty"`
	JetStream bool     `json:"jetstream"`
	Streams   []string `json:"streams,omitempty"` // name, leader and replica state of each
}

// NATS connects to the target's nats:// URL as a netops client would,
// measures the connection and a round trip (metric rtt), and checks what
// netops needs of it: JetStream answering for the account (CRITICAL when it
// does not), and with rule.MinAlive at least that many servers in the
// cluster (WARNING when fewer). Streams whose replicas are offline or
// lagging are listed in the message and make the result a WARNING.
func NATS(ctx context.Context, t Target, r config.Rule) Result {
	start := time.Now()
	nc, err := natsbackend.Connect(ctx, config.Backend{URL: t.Address}, "netops diag")
	if err != nil {
		return Failf(Critical, classifyNATS(err), "nats: %v", err)
	}
	defer nc.Close()
	rtt, err := nc.RTT()
	if err != nil {
		return Failf(Critical, ReasonError, "nats: round trip to %s: %v", nc.ConnectedUrlRedacted(), err)
	}
	connect := time.Since(start) - rtt
	st, err := natsbackend.Status(ctx, nc)
	d := NATSDetails{Server: st.Server, Version: st.Version, Cluster: st.Cluster, Servers: st.Servers}
	res := Result{
		Metrics: []Metric{
			{Name: MetricRTT, Value: Seconds(rtt), Unit: "s"},
			{Name: "connect_time", Value: Seconds(connect), Unit: "s"},
			{Name: MetricServers, Value: float64(len(st.Servers))},
		},
		Details: &d,
	}
	if err != nil {
		res.Status, res.Reason = Critical, ReasonError
		if errors.Is(err, natsbackend.ErrUnsupported) {
			res.Reason = ReasonMismatch
		}
		res.Message = fmt.Sprintf("%s %s: %v", st.Server, st.Version, err)
		return res
	}
	d.JetStream = true
	res.Metrics = append(res.Metrics, Metric{Name: MetricStreams, Value: float64(len(st.Streams))})
	var degraded []string
	for _, s := range st.Streams {
		line := fmt.Sprintf("%s R%d leader %s", s.Name, s.Replicas, s.Leader)
		for _, p := range s.Peers {
			switch {
			case p.Offline:
				degraded = append(degraded, fmt.Sprintf("%s replica on %s offline", s.Name, p.Name))
				line += " " + p.Name + " offline"
			case !p.Current:
				degraded = append(degraded, fmt.Sprintf("%s replica on %s behind by %d", s.Name, p.Name, p.Lag))
				line += fmt.Sprintf(" %s lag %d", p.Name, p.Lag)
			}
		}
		if s.Replicas > 1 && s.Leader == "" {
			degraded = append(degraded, s.Name+" has no leader")
		}
		d.Streams = append(d.Streams, line)
	}
	where := st.Server
	if st.Cluster != "" {
		where += " in cluster " + st.Cluster
	}
	res.Status = OK
	res.Message = fmt.Sprintf("%s (nats-server %s), JetStream OK, %d servers, %d streams, rtt %s",
		where, st.Version, len(st.Servers), len(st.Streams), FormatSeconds(Seconds(rtt)))
	if r.MinAlive > 0 && len(st.Servers) < r.MinAlive {
		res.Status, res.Reason = Warning, ReasonThreshold
		res.Message = appendWhy(res.Message, fmt.Sprintf("%d servers < min_alive %d", len(st.Servers), r.MinAlive))
	}
	if len(degraded) > 0 {
		res.Status = Warning
		if res.Reason == "" {
			res.Reason = ReasonMismatch
		}
		res.Message = appendWhy(res.Message, degraded[0])
		if len(degraded) > 1 {
			res.Message += fmt.Sprintf(" (and %d more)", len(degraded)-1)
		}
	}
	return res
}

// classifyNATS maps a connection failure to a reason code.
func classifyNATS(err error) string {
	if r := Classify(err); r != "" {
		return r
	}
	return ReasonError
}
