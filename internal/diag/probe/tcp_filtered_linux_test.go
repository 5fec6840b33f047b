package probe

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/config"
)

// TestTCPFiltered makes a loopback port that drops SYNs: a socket listening
// with backlog 0 and never accepting, whose queue is filled first. A connect
// to it hangs like one to a filtered port, so the check must time out.
func TestTCPFiltered(t *testing.T) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(scanTestFiltered(t))) // skips where it cannot be made
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	res := TCP(ctx, Target{Address: addr}, config.Rule{})
	tcpTestCheck(t, res, Critical, ReasonTimeout, []string{"no answer from " + addr + " within", "filtered"}, nil)
}
