package diag

import (
	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/diag/probe"
)

// Probes returns the probe for every check kind, written out by hand (no
// registration at init time).
func Probes() map[string]probe.Func {
	return map[string]probe.Func{
		config.CheckICMP:       probe.ICMP,
		config.CheckTCP:        probe.TCP,
		config.CheckHTTP:       probe.HTTP,
		config.CheckDNS:        probe.DNS,
		config.CheckLatency:    probe.Latency,
		config.CheckPortscan:   probe.Portscan,
		config.CheckDiscover:   probe.Discover,
		config.CheckBandwidth:  probe.Bandwidth,
		config.CheckTraceroute: probe.Traceroute,
		config.CheckExec:       probe.Exec,
		config.CheckNATS:       probe.NATS,
	}
}
