package cli

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/sshconn"
	"github.com/netops-dev/netops/internal/transfer"
)

func TestTransferExitCode(t *testing.T) {
	unreach := fmt.Errorf("destination: %w", &sshconn.Error{Target: "h", Msg: "refused", Kind: sshconn.ErrUnreachable})
	httpDial := fmt.Errorf("source: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")})
	failed := errors.New("copy a -> b: checksum")
	cfgErr := &config.Error{}
	for _, c := range []struct {
		errs        []error
		interrupted bool
		want        int
	}{
		{[]error{unreach}, false, ExitUnavailable},
		{[]error{httpDial}, false, ExitUnavailable},
		{[]error{unreach, failed}, false, ExitFailure},
		{[]error{failed}, false, ExitFailure},
		{[]error{cfgErr}, false, ExitConfig},
		{[]error{failed}, true, ExitInterrupted},
		{[]error{fmt.Errorf("x: %w", sshconn.ErrAuth)}, false, ExitFailure},
	} {
		if got := transferExitCode(c.errs, c.interrupted); got != c.want {
			t.Errorf("transferExitCode(%v, %v) = %d, want %d", c.errs, c.interrupted, got, c.want)
		}
	}
}

func TestProgressBar(t *testing.T) {
	var b bytes.Buffer
	p := newProgressBar(&b)
	p.event(transfer.Event{Kind: transfer.EventPlan, TotalFiles: 2, TotalBytes: 2 << 20})
	p.event(transfer.Event{Kind: transfer.EventFileStart, Path: "a.bin", Size: 1 << 20})
	p.event(transfer.Event{Kind: transfer.EventFileProgress, Path: "a.bin", Size: 1 << 20, Done: 1 << 20, Delta: 1 << 20})
	p.event(transfer.Event{Kind: transfer.EventFileDone, Path: "a.bin", Size: 1 << 20, Done: 1 << 20})
	p.stop()
	out := b.String()
	for _, want := range []string{"1/2 files", "1.0 MiB/2.0 MiB", "50%", "ETA", "a.bin 100%", "\r\x1b[K"} {
		if !strings.Contains(out, want) {
			t.Errorf("progress output %q lacks %q", out, want)
		}
	}
	if !strings.HasSuffix(out, "\r\x1b[K") {
		t.Errorf("stop does not clear the line: %q", out)
	}
	// After stop nothing more is drawn.
	n := b.Len()
	p.event(transfer.Event{Kind: transfer.EventFileDone})
	if b.Len() != n {
		t.Error("drew after stop")
	}
}
