package natsbackend

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ServerStatus describes the NATS server (or cluster) a connection reached,
// as `netops server status` reports it.
type ServerStatus struct {
	URL     string `json:"url"`               // the server this connection uses (credentials redacted)
	Server  string `json:"server"`            // its server name
	Version string `json:"version"`           // its nats-server version
	Cluster string `json:"cluster,omitempty"` // its cluster name ("" when not clustered)
	// Servers are the client URLs this connection knows: the configured
	// ones and those the cluster announced (it fails over between them).
	Servers   []string        `json:"servers"`
	JetStream JetStreamStatus `json:"jetstream"`
	Streams   []StreamStatus  `json:"streams"`
}

// JetStreamStatus is the account's JetStream usage.
type JetStreamStatus struct {
	Streams   int    `json:"streams"`
	Consumers int    `json:"consumers"`
	Storage   uint64 `json:"storage_bytes"`
	Memory    uint64 `json:"memory_bytes"`
}

// StreamStatus is one stream and, on a cluster, where its replicas are.
type StreamStatus struct {
	Name     string       `json:"name"`
	Messages uint64       `json:"messages"`
	Bytes    uint64       `json:"bytes"`
	Replicas int          `json:"replicas"`
	Leader   string       `json:"leader,omitempty"`
	Peers    []PeerStatus `json:"peers,omitempty"` // the followers
}

// PeerStatus is a follower replica of a stream.
type PeerStatus struct {
	Name    string        `json:"name"`
	Current bool          `json:"current"`
	Offline bool          `json:"offline"`
	Lag     uint64        `json:"lag"`
	Active  time.Duration `json:"active_ns"`
}

// Status reports the server nc is connected to, its cluster as the streams
// of this account see it (leader and followers of each), and JetStream use.
func Status(ctx context.Context, nc *nats.Conn) (ServerStatus, error) {
	st := ServerStatus{
		URL:     nc.ConnectedUrlRedacted(),
		Server:  nc.ConnectedServerName(),
		Version: nc.ConnectedServerVersion(),
		Cluster: nc.ConnectedClusterName(),
		Servers: nc.Servers(),
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return st, err
	}
	ai, err := js.AccountInfo(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) ||
			errors.Is(err, nats.ErrNoResponders) {
			return st, unsupported(fmt.Sprintf("JetStream is not enabled on the NATS server at %s for this account", st.URL), err)
		}
		return st, unavailable(fmt.Sprintf("NATS at %s: JetStream account info: %v", st.URL, err), err)
	}
	st.JetStream = JetStreamStatus{Streams: ai.Streams, Consumers: ai.Consumers, Storage: ai.Store, Memory: ai.Memory}
	streams := js.ListStreams(ctx)
	for si := range streams.Info() {
		ss := StreamStatus{
			Name:     si.Config.Name,
			Messages: si.State.Msgs,
			Bytes:    si.State.Bytes,
			Replicas: si.Config.Replicas,
		}
		if c := si.Cluster; c != nil {
			ss.Leader = c.Leader
			for _, p := range c.Replicas {
				ss.Peers = append(ss.Peers, PeerStatus{Name: p.Name, Current: p.Current, Offline: p.Offline, Lag: p.Lag, Active: p.Active})
			}
		}
		st.Streams = append(st.Streams, ss)
	}
	if err := streams.Err(); err != nil {
		return st, unavailable(fmt.Sprintf("NATS at %s: list streams: %v", st.URL, err), err)
	}
	slices.SortFunc(st.Streams, func(a, b StreamStatus) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return st, nil
}
