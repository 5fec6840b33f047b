package natsbackend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// errIncomplete means a direct read could not return every key (too many,
// or the server cut the batch short): use a watch instead.
var errIncomplete = errors.New("direct read incomplete")

// lastTickets reads the last message of every key matching filter (a key
// pattern: "<lock>.*" or ">") with one direct get (multi_last, nats-server
// >= 2.11) and returns the tickets by key, deleted ones (markers) with
// deleted set, and the stream sequence the snapshot is as of: a key with no
// message at all is absent. The server answers from one consistent
// snapshot of the stream.
//
// On a replicated bucket a follower may answer with a snapshot that lags
// behind the leader: callers that decide on it (the Acquire fast path)
// check that their own latest write is in it, which implies every earlier
// write is.
func (l *Locker) lastTickets(ctx context.Context, filter string) (_ map[string]slot, upTo uint64, _ error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	inbox := l.nc.NewInbox()
	sub, err := l.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	body, err := json.Marshal(struct {
		MultiLast []string `json:"multi_last"`
	}{[]string{l.prefix + filter}})
	if err != nil {
		return nil, 0, err
	}
	if err := l.nc.PublishRequest(l.directGet, inbox, body); err != nil {
		return nil, 0, err
	}
	out := make(map[string]slot)
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, 0, err
		}
		if status := m.Header.Get("Status"); status != "" {
			switch status {
			case "204": // end of batch
				if np := m.Header.Get("Nats-Num-Pending"); np != "" && np != "0" {
					return nil, 0, errIncomplete
				}
				upTo, err := strconv.ParseUint(m.Header.Get("Nats-UpTo-Sequence"), 10, 64)
				if err != nil {
					return nil, 0, errIncomplete
				}
				return out, upTo, nil
			case "404": // no keys: as of an unknown sequence
				return out, 0, nil
			case "413":
				return nil, 0, errIncomplete
			case "503":
				return nil, 0, nats.ErrNoResponders
			default:
				return nil, 0, fmt.Errorf("direct get: status %s %s", status, m.Header.Get("Description"))
			}
		}
		subj := m.Header.Get(jetstream.SubjectHeader)
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil || !strings.HasPrefix(subj, l.prefix) {
			return nil, 0, fmt.Errorf("direct get: unexpected reply for %q", subj)
		}
		key := subj[len(l.prefix):]
		if m.Header.Get("KV-Operation") != "" || m.Header.Get(jetstream.MarkerReasonHeader) != "" {
			out[key] = slot{key: key, rev: seq, deleted: true} // deleted, purged or expired
			continue
		}
		ts, _ := time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
		out[key], _ = decodeValue(key, m.Data, seq, ts)
	}
}
