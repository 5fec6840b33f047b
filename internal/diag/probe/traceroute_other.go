//go:build !linux

package probe

import (
	"errors"
	"net/netip"
)

// traceUDP probes need the Linux socket error queue (IP_RECVERR).
type traceUDP struct{ traceProber }

func traceListenUDP(netip.Addr, int) (*traceUDP, error) {
	return nil, errors.New("UDP traceroute without privileges needs Linux (IP_RECVERR)")
}
