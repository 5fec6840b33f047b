package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/netops-dev/netops/internal/diag"
	"github.com/netops-dev/netops/internal/ipc"
	"github.com/netops-dev/netops/internal/transfer"
)

// Event kinds published by --alert-channel and --notify.
const (
	eventDiagAlert      = "diag.alert"
	eventTransferResult = "transfer.result"
)

// notifyTimeout bounds the publication of one event (the backend open
// included), so that a slow or dead backend delays the main work by at most
// this much per event.
const notifyTimeout = 10 * time.Second

// notifier publishes JSON events on an ipc channel of the configured
// backend. Publishing is best effort: a failure is reported as a one-line
// warning on stderr and never changes the command's result or exit code.
// The backend is opened on first use (and again after a failed open).
type notifier struct {
	a       *app
	channel string
	mu      sync.Mutex
	b       ipc.Backend
}

// newNotifier checks the channel name; a bad name is a usage error, found
// before the main work starts. An empty channel gives a nil notifier, whose
// publish does nothing.
func (a *app) newNotifier(flag, channel string) (*notifier, error) {
	if channel == "" {
		return nil, nil
	}
	if err := ipc.ValidateName("channel", channel); err != nil {
		return nil, usageErrorf(fmt.Errorf("%s: %w", flag, err))
	}
	return &notifier{a: a, channel: channel}, nil
}

// publish sends ev (marshalled to JSON) as one message, within ctx and
// notifyTimeout; what names the event in the warning. Safe for concurrent
// use.
func (n *notifier) publish(ctx context.Context, kind, what string, ev any) {
	if n == nil {
		return
	}
	if err := n.send(ctx, kind, ev); err != nil {
		fmt.Fprintf(n.a.ios.ErrOut, "netops: warning: %s event (%s) not published to channel %s: %v\n", kind, what, n.channel, err)
	}
}

func (n *notifier) send(ctx context.Context, kind string, ev any) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, notifyTimeout)
	defer cancel()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.b == nil {
		b, err := n.a.ipcBackend(ctx)
		if err != nil {
			return err
		}
		n.b = b
	}
	_, err = n.b.Publish(ctx, n.channel, []ipc.Outgoing{{Sender: defaultSender(),
		Headers: map[string]string{"kind": kind, "content-type": "application/json"}, Body: body}})
	return err
}

func (n *notifier) close() {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.b != nil {
		n.b.Close()
		n.b = nil
	}
}

// alertEvent is the diag.alert event: the alert as --alert-exec gets it,
// plus kind and time.
type alertEvent struct {
	Kind string    `json:"kind"`
	Time time.Time `json:"time"`
	diag.Alert
}

func newAlertEvent(al diag.Alert) alertEvent {
	return alertEvent{Kind: eventDiagAlert, Time: al.At, Alert: al}
}

// transferEvent is the transfer.result event of one profile (or copy).
type transferEvent struct {
	Kind        string    `json:"kind"`
	Time        time.Time `json:"time"` // when the transfer finished
	Profile     string    `json:"profile"`
	Source      string    `json:"source"`
	Destination string    `json:"destination"`
	Mode        string    `json:"mode"`
	Status      string    `json:"status"` // ok, failed or interrupted
	Files       int       `json:"files"`
	Failed      int       `json:"failed"`
	Bytes       int64     `json:"bytes"`
	BytesSent   int64     `json:"bytes_sent"`
	Deleted     int       `json:"deleted"`
	DurationMS  int64     `json:"duration_ms"`
	Error       string    `json:"error,omitempty"`
}

func newTransferEvent(o transferOutcome, finished time.Time) transferEvent {
	j := o.job
	ev := transferEvent{Kind: eventTransferResult, Time: finished, Profile: j.name,
		Source: j.src.Display, Destination: j.dst.Display, Mode: j.opts.Mode, Status: transfer.StatusOK}
	if o.res != nil {
		rr := transfer.Record(o.res, j.opts, o.err)
		ev.Status, ev.Error = rr.Status, rr.Error
		ev.Files, ev.Failed, ev.Bytes, ev.BytesSent, ev.Deleted = rr.Files, rr.Failed, rr.Bytes, rr.BytesSent, rr.Deleted
		ev.DurationMS = rr.Duration.Milliseconds()
		if rr.Mode != "" {
			ev.Mode = rr.Mode
		}
	} else if o.err != nil {
		ev.Status, ev.Error = transfer.StatusFailed, o.err.Error()
		if errors.Is(o.err, context.Canceled) {
			ev.Status = transfer.StatusInterrupted
		}
	}
	return ev
}
