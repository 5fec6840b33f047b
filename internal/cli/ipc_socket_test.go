package cli

import (
	"errors"
	"fmt"
	"testing"

	"github.com/netops-dev/netops/internal/ipc/socket"
)

func TestSocketExitCodes(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{fmt.Errorf("connect 127.0.0.1:9: %w", socket.ErrUnavailable), ExitUnavailable},
		{fmt.Errorf("listen 127.0.0.1:9000: %w", socket.ErrAddrInUse), ExitUnavailable},
		{fmt.Errorf("no reply from 127.0.0.1:9000 within 5s: %w", socket.ErrNoReply), ExitFailure},
		{fmt.Errorf("too many connections: %w", socket.ErrPeer), ExitFailure},
		{usageErrorf(fmt.Errorf("listen 0.0.0.0:1: %w", socket.ErrRemoteNotAllowed)), ExitUsage},
	}
	for _, tt := range tests {
		if got := exitCode(tt.err, false); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
	if errors.Is(socket.ErrNoReply, socket.ErrUnavailable) {
		t.Fatal("sentinels overlap")
	}
}
