package natsbackend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/ipc"
)

// Names of the JetStream objects of the ipc backend. A queue NAME is the
// stream "netops_q_NAME" on subjects "netops.q.NAME.<priority>" with one
// durable pull consumer per priority ("netops_high", ...) and a dead-letter
// stream "netops_dlq_NAME" on "netops.dlq.NAME"; a channel NAME is the
// stream "netops_ch_NAME" on "netops.ch.NAME", whose durable subscribers
// are durable consumers named like them. Queue counters (sent, acked,
// dropped) are JSON values in the KV bucket "netops_ipc_stats".
const (
	queueStreamPrefix   = "netops_q_"
	dlqStreamPrefix     = "netops_dlq_"
	channelStreamPrefix = "netops_ch_"
	statsBucket         = "netops_ipc_stats"
)

func queueStream(q string) string        { return queueStreamPrefix + q }
func dlqStream(q string) string          { return dlqStreamPrefix + q }
func channelStream(c string) string      { return channelStreamPrefix + c }
func queueSubjects(q string) string      { return "netops.q." + q + ".*" }
func dlqSubject(q string) string         { return "netops.dlq." + q }
func channelSubject(c string) string     { return "netops.ch." + c }
func prioConsumer(p ipc.Priority) string { return "netops_" + string(p) }
func prioSubject(q string, p ipc.Priority) string {
	return "netops.q." + q + "." + string(p)
}

// Message headers.
const (
	hdrID         = "Netops-Id"
	hdrTime       = "Netops-Time"
	hdrSender     = "Netops-Sender"
	hdrPriority   = "Netops-Priority"
	hdrReason     = "Netops-Reason"
	hdrDeliveries = "Netops-Deliveries"
	hdrUserPrefix = "Netops-H-"
)

// Stream metadata keys of a queue stream.
const (
	mdKind          = "netops.kind"
	mdID            = "netops.id"
	mdOverflow      = "netops.overflow"
	mdMaxDeliveries = "netops.max_deliveries"
	mdVisibility    = "netops.visibility"
)

// IPCOptions configure NewIPC and OpenIPC.
type IPCOptions struct {
	// Replicas of the streams netops creates (default 1).
	Replicas int
	// CloseConn makes Close close the NATS connection too.
	CloseConn bool
	// Poll is how often a waiting Receive looks for messages coming back
	// from a visibility timeout or a retry delay (new messages wake it at
	// once). Default 250ms.
	Poll time.Duration
}

// publishAckTimeout bounds the wait for the acknowledgement of a message
// published to a queue or channel.
const publishAckTimeout = 15 * time.Second

// IPC is the NATS JetStream ipc backend; it implements ipc.Backend and is
// safe for concurrent use.
//
// # Queues
//
// A queue is a work-queue stream (a message is removed when acknowledged)
// with one subject per priority and one durable pull consumer per subject
// (explicit acks, AckWait = the visibility timeout, no server-side
// MaxDeliver). Receive fetches without waiting from the high consumer,
// then normal, then low, so a delivery is always the oldest ready message
// of the highest priority that has one. When nothing is ready it waits on
// a core NATS subscription to the queue's subjects (every publish rings
// it) and polls every IPCOptions.Poll for messages that come back from a
// visibility timeout or a retry delay, which publish nothing.
//
// The bound: the stream's MaxMsgs with DiscardNew, so the server refuses a
// message over it. Send publishes a batch that fits asynchronously (in
// order, one connection); otherwise one message at a time, and a refused
// message is either the end (reject: ipc.ErrFull) or makes Send delete the
// oldest message of the stream, whatever its priority, and try again
// (drop-oldest). Doing the dropping in the client rather than with
// DiscardOld is what lets Send report SendResult.Dropped exactly.
//
// Ack, Nack (-NAK with the delay) and Extend (+WPI, which restarts
// AckWait) are requests the server confirms. Dead letters: the consumers
// never give up on a message; a Nack of the MaxDeliveries-th delivery, or
// a Receive that fetches a message delivered more than MaxDeliveries times
// (its last visibility timeout passed), copies it to the dead-letter
// stream with the reason and the delivery count (deduplicated by the
// queue's id and the message's stream sequence, in case two processes do
// it) and acknowledges it in the queue. Redrive publishes dead letters to
// the queue again and deletes them from the dead-letter stream.
//
// The queue's settings live in the stream's metadata; counters (sent,
// acked, dropped) in the KV bucket netops_ipc_stats, updated once per Send,
// Ack or AckAll with a compare-and-swap. Stats: ready = stored messages
// minus the consumers' pending acks (a message whose visibility timeout
// passed counts as in flight until it is fetched again); Peek shows the
// messages no consumer has been given yet.
//
// # Channels
//
// A channel is a limits stream keeping the newest ipc.ChannelRetention
// messages, created on first use. A non-durable subscriber is an ordered
// consumer starting after the last message stored when it subscribed; a
// durable one is a durable consumer named like it (ack policy all, so
// acknowledging a message acknowledges everything before it). When a
// durable subscriber comes back with messages it had read but not
// acknowledged, its consumer is re-created to start right after the last
// acknowledged message, so they come again at once rather than after the
// ack wait.
//
// Message metadata travels in headers (Netops-Time, Netops-Sender,
// Netops-Priority, Netops-H-<header>), so every field round-trips and the
// time is the sender's clock, as on the local backend. A message's id is
// its stream sequence; a dead letter (and a message redriven from the dead
// letters) keeps the id of the original message in Netops-Id.
type IPC struct {
	nc        *nats.Conn
	js        jetstream.JetStream
	opts      IPCOptions
	closeConn bool

	mu       sync.Mutex
	queues   map[string]*queueMeta // cache, refreshed after queueCacheTTL
	channels map[string]bool       // channel streams known to exist
	kv       jetstream.KeyValue
	closed   bool
}

const queueCacheTTL = 2 * time.Second

// queueMeta is what Send and Receive need to know about a queue.
type queueMeta struct {
	cfg      ipc.QueueConfig
	created  time.Time
	id       string
	stream   jetstream.Stream
	cons     map[ipc.Priority]jetstream.Consumer
	loadedAt time.Time
}

var _ ipc.Backend = (*IPC)(nil)

// OpenIPC connects to the NATS server(s) of cfg and returns the ipc
// backend on that connection (closed by Close). Errors wrap
// ipc.ErrUnavailable when no server can be reached, ErrConfig for unusable
// settings.
func OpenIPC(ctx context.Context, cfg config.Backend, name string, o IPCOptions) (*IPC, error) {
	nc, err := Connect(ctx, cfg, name)
	if err != nil {
		if errors.Is(err, ErrConfig) {
			return nil, err
		}
		return nil, &backendError{msg: err.Error(), errs: []error{ipc.ErrUnavailable, err}}
	}
	o.CloseConn = true
	b, err := NewIPC(ctx, nc, o)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return b, nil
}

// NewIPC returns the ipc backend on nc. It checks that JetStream is
// enabled (else an error wrapping ipc.ErrUnavailable).
func NewIPC(ctx context.Context, nc *nats.Conn, o IPCOptions) (*IPC, error) {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Poll <= 0 {
		o.Poll = 250 * time.Millisecond
	}
	// An acknowledgement lost with a node that died never comes: give up on
	// it after publishAckTimeout (the send then fails; whether that message
	// was stored is unknown, so a retried send may store it twice).
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(publishAckTimeout))
	if err != nil {
		return nil, ipcUnavailable(fmt.Sprintf("NATS at %s: %v", nc.ConnectedUrlRedacted(), err), err)
	}
	// A cluster electing its JetStream leader answers after a while.
	if _, err := retryJS(ctx, js.AccountInfo); err != nil {
		return nil, ipcUnavailable(fmt.Sprintf("NATS at %s: JetStream not available: %v", nc.ConnectedUrlRedacted(), err), err)
	}
	return &IPC{nc: nc, js: js, opts: o, closeConn: o.CloseConn,
		queues: map[string]*queueMeta{}, channels: map[string]bool{}}, nil
}

// Close releases the backend (and the connection with CloseConn).
func (b *IPC) Close() error {
	b.mu.Lock()
	closed := b.closed
	b.closed = true
	b.mu.Unlock()
	if closed {
		return nil
	}
	if b.closeConn {
		b.nc.Close()
	}
	return nil
}

// notFoundError reads as its message alone and matches ipc.ErrNotFound.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }
func (e *notFoundError) Unwrap() error { return ipc.ErrNotFound }

func queueNotFound(name string) error {
	return &notFoundError{fmt.Sprintf("unknown queue %q: create it with 'netops ipc queue create %s' or declare it in the config file", name, name)}
}

func ipcUnavailable(msg string, causes ...error) error {
	errs := []error{ipc.ErrUnavailable}
	for _, c := range causes {
		if c != nil {
			errs = append(errs, c)
		}
	}
	return &backendError{msg: msg, errs: errs}
}

// opErr maps a JetStream error of operation what ("send to queue jobs") to
// the ipc error kinds.
func opErr(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)) {
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	switch {
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrAsyncPublishTimeout),
		errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, jetstream.ErrJetStreamNotEnabled),
		errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected):
		return ipcUnavailable(fmt.Sprintf("%s: NATS unavailable: %v", what, err), err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ---- queue administration ----

func (b *IPC) queueStreamConfig(cfg ipc.QueueConfig, id string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        queueStream(cfg.Name),
		Description: "netops ipc queue " + cfg.Name,
		Subjects:    []string{queueSubjects(cfg.Name)},
		Retention:   jetstream.WorkQueuePolicy,
		// Overflow is applied by Send: the server refuses a message over
		// the bound, and drop-oldest deletes the oldest message and retries,
		// so that Send can tell what it dropped.
		MaxMsgs:    int64(cfg.MaxSize),
		Discard:    jetstream.DiscardNew,
		Storage:    jetstream.FileStorage,
		Replicas:   b.opts.Replicas,
		Duplicates: 2 * time.Minute,
		Metadata: map[string]string{
			mdKind:          "queue",
			mdID:            id,
			mdOverflow:      string(cfg.Overflow),
			mdMaxDeliveries: strconv.Itoa(cfg.MaxDeliveries),
			mdVisibility:    cfg.Visibility.String(),
		},
	}
}

func (b *IPC) consumerConfig(cfg ipc.QueueConfig, p ipc.Priority) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       prioConsumer(p),
		Description:   "netops ipc receivers, " + string(p) + " priority",
		FilterSubject: prioSubject(cfg.Name, p),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.Visibility,
		// Dead letters are moved by netops (Nack, Receive), so the server
		// never gives up on a message by itself.
		MaxDeliver:    -1,
		MaxAckPending: -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      b.opts.Replicas,
	}
}

func (b *IPC) dlqStreamConfig(q string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        dlqStream(q),
		Description: "netops ipc dead letters of queue " + q,
		Subjects:    []string{dlqSubject(q)},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    b.opts.Replicas,
		Duplicates:  2 * time.Minute,
	}
}

func prepareQueueConfig(cfg ipc.QueueConfig) (ipc.QueueConfig, error) {
	if err := ipc.ValidateName("queue", cfg.Name); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg.WithDefaults(), nil
}

// CreateQueue implements ipc.Backend.
func (b *IPC) CreateQueue(ctx context.Context, cfg ipc.QueueConfig) error {
	cfg, err := prepareQueueConfig(cfg)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("create queue %s", cfg.Name)
	s, err := b.js.CreateStream(ctx, b.queueStreamConfig(cfg, newID()))
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("%s: %w", what, ipc.ErrExists)
		}
		return opErr(ctx, what, err)
	}
	return b.finishQueue(ctx, what, cfg, s, true)
}

// finishQueue creates (or updates) the consumers and the dead-letter stream
// of a queue; fresh: the queue is new (old dead letters and counters of a
// deleted queue of the same name are cleared).
func (b *IPC) finishQueue(ctx context.Context, what string, cfg ipc.QueueConfig, s jetstream.Stream, fresh bool) error {
	for _, p := range ipc.Priorities() {
		if _, err := s.CreateOrUpdateConsumer(ctx, b.consumerConfig(cfg, p)); err != nil {
			return opErr(ctx, what, err)
		}
	}
	dlq, err := b.js.CreateOrUpdateStream(ctx, b.dlqStreamConfig(cfg.Name))
	if err != nil {
		return opErr(ctx, what, err)
	}
	if fresh {
		if err := dlq.Purge(ctx); err != nil {
			return opErr(ctx, what, err)
		}
		if err := b.putCounters(ctx, cfg.Name, counters{}); err != nil {
			return opErr(ctx, what, err)
		}
	}
	b.forget(cfg.Name)
	return nil
}

// EnsureQueue implements ipc.Backend.
func (b *IPC) EnsureQueue(ctx context.Context, cfg ipc.QueueConfig) error {
	cfg, err := prepareQueueConfig(cfg)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("ensure queue %s", cfg.Name)
	for range 3 {
		s, err := b.js.Stream(ctx, queueStream(cfg.Name))
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			err = b.CreateQueue(ctx, cfg)
			if errors.Is(err, ipc.ErrExists) {
				continue // created meanwhile: update it
			}
			return err
		}
		if err != nil {
			return opErr(ctx, what, err)
		}
		sc := b.queueStreamConfig(cfg, s.CachedInfo().Config.Metadata[mdID])
		if _, err := b.js.UpdateStream(ctx, sc); err != nil {
			return opErr(ctx, what, err)
		}
		return b.finishQueue(ctx, what, cfg, s, false)
	}
	return fmt.Errorf("%s: the queue is being created and deleted concurrently", what)
}

// DeleteQueue implements ipc.Backend.
func (b *IPC) DeleteQueue(ctx context.Context, name string) error {
	if err := ipc.ValidateName("queue", name); err != nil {
		return err
	}
	what := "delete queue " + name
	defer b.forget(name)
	if err := b.js.DeleteStream(ctx, queueStream(name)); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return queueNotFound(name)
		}
		return opErr(ctx, what, err)
	}
	if err := b.js.DeleteStream(ctx, dlqStream(name)); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return opErr(ctx, what, err)
	}
	if kv, err := b.statsKV(ctx); err == nil {
		_ = kv.Purge(ctx, name)
	}
	return nil
}

// PurgeQueue implements ipc.Backend.
func (b *IPC) PurgeQueue(ctx context.Context, name string) (int, error) {
	if err := ipc.ValidateName("queue", name); err != nil {
		return 0, err
	}
	what := "purge queue " + name
	if _, err := b.queue(ctx, name, true); err != nil {
		return 0, err
	}
	// The purge API answers with the count; the jetstream package drops it.
	msg, err := b.nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+queueStream(name), nil)
	if err != nil {
		return 0, opErr(ctx, what, err)
	}
	var resp struct {
		Success bool   `json:"success"`
		Purged  uint64 `json:"purged"`
		Error   *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("%s: bad response: %w", what, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == 10059 { // stream not found
			return 0, queueNotFound(name)
		}
		return 0, fmt.Errorf("%s: %s", what, resp.Error.Description)
	}
	return int(resp.Purged), nil
}

// Queues implements ipc.Backend.
func (b *IPC) Queues(ctx context.Context) ([]ipc.QueueConfig, error) {
	lister := b.js.ListStreams(ctx, jetstream.WithStreamListSubject("netops.q.>"))
	var out []ipc.QueueConfig
	for si := range lister.Info() {
		if !strings.HasPrefix(si.Config.Name, queueStreamPrefix) || si.Config.Metadata[mdKind] != "queue" {
			continue
		}
		out = append(out, queueConfigOf(si))
	}
	if err := lister.Err(); err != nil {
		return nil, opErr(ctx, "list queues", err)
	}
	slices.SortFunc(out, func(x, y ipc.QueueConfig) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}

func queueConfigOf(si *jetstream.StreamInfo) ipc.QueueConfig {
	md := si.Config.Metadata
	cfg := ipc.QueueConfig{
		Name:     strings.TrimPrefix(si.Config.Name, queueStreamPrefix),
		MaxSize:  int(si.Config.MaxMsgs),
		Overflow: ipc.Overflow(md[mdOverflow]),
	}
	cfg.MaxDeliveries, _ = strconv.Atoi(md[mdMaxDeliveries])
	cfg.Visibility, _ = time.ParseDuration(md[mdVisibility])
	return cfg.WithDefaults()
}

// queue returns the queue's metadata (cached for queueCacheTTL unless
// fresh), ipc.ErrNotFound when there is no such queue.
func (b *IPC) queue(ctx context.Context, name string, fresh bool) (*queueMeta, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, fmt.Errorf("queue %s: %w: backend closed", name, ipc.ErrUnavailable)
	}
	qm := b.queues[name]
	b.mu.Unlock()
	if qm != nil && !fresh && time.Since(qm.loadedAt) < queueCacheTTL {
		return qm, nil
	}
	s, err := b.js.Stream(ctx, queueStream(name))
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			b.forget(name)
			return nil, queueNotFound(name)
		}
		return nil, opErr(ctx, "queue "+name, err)
	}
	si := s.CachedInfo()
	if si.Config.Metadata[mdKind] != "queue" {
		return nil, fmt.Errorf("queue %q: stream %s was not made by netops: %w", name, si.Config.Name, ipc.ErrNotFound)
	}
	qm = &queueMeta{cfg: queueConfigOf(si), created: si.Created, id: si.Config.Metadata[mdID], stream: s,
		cons: map[ipc.Priority]jetstream.Consumer{}, loadedAt: time.Now()}
	if old := b.cached(name); old != nil && old.id == qm.id {
		qm.cons = old.cons // same queue: the consumer handles still hold
	}
	for _, p := range ipc.Priorities() {
		if qm.cons[p] != nil {
			continue
		}
		c, err := s.Consumer(ctx, prioConsumer(p))
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			// A queue being created, or damaged: (re)create it.
			c, err = s.CreateOrUpdateConsumer(ctx, b.consumerConfig(qm.cfg, p))
		}
		if err != nil {
			return nil, opErr(ctx, "queue "+name, err)
		}
		qm.cons[p] = c
	}
	b.mu.Lock()
	b.queues[name] = qm
	b.mu.Unlock()
	return qm, nil
}

func (b *IPC) cached(name string) *queueMeta {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.queues[name]
}

func (b *IPC) forget(name string) {
	b.mu.Lock()
	delete(b.queues, name)
	b.mu.Unlock()
}

// ---- counters ----

// counters are a queue's totals, in the stats bucket under its name.
type counters struct {
	Sent    uint64 `json:"sent"`
	Acked   uint64 `json:"acked"`
	Dropped uint64 `json:"dropped"`
}

func (b *IPC) statsKV(ctx context.Context) (jetstream.KeyValue, error) {
	b.mu.Lock()
	kv := b.kv
	b.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	kv, err := b.js.KeyValue(ctx, statsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: statsBucket, Description: "netops ipc queue counters", History: 1,
			Storage: jetstream.FileStorage, Replicas: b.opts.Replicas,
		})
	}
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.kv = kv
	b.mu.Unlock()
	return kv, nil
}

func (b *IPC) putCounters(ctx context.Context, q string, c counters) error {
	kv, err := b.statsKV(ctx)
	if err != nil {
		return err
	}
	data, _ := json.Marshal(c)
	_, err = kv.Put(ctx, q, data)
	return err
}

func (b *IPC) getCounters(ctx context.Context, q string) (counters, error) {
	var c counters
	kv, err := b.statsKV(ctx)
	if err != nil {
		return c, err
	}
	e, err := kv.Get(ctx, q)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	_ = json.Unmarshal(e.Value(), &c)
	return c, nil
}

// addCounters adds d to a queue's counters (compare-and-swap, retried).
// Counters are best effort: a failure is returned but what it counts has
// happened.
func (b *IPC) addCounters(ctx context.Context, q string, d counters) error {
	if d == (counters{}) {
		return nil
	}
	kv, err := b.statsKV(ctx)
	if err != nil {
		return err
	}
	for i := range 50 {
		if i > 0 {
			// Another sender won the race: back off a little, at random,
			// so that concurrent senders do not keep colliding.
			time.Sleep(time.Duration(mrand.IntN(5*i)+1) * time.Millisecond)
		}
		var c counters
		e, err := kv.Get(ctx, q)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			c = d
			data, _ := json.Marshal(c)
			if _, err := kv.Create(ctx, q, data); err == nil {
				return nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return err
			}
			continue
		case err != nil:
			return err
		}
		_ = json.Unmarshal(e.Value(), &c)
		c.Sent += d.Sent
		c.Acked += d.Acked
		c.Dropped += d.Dropped
		data, _ := json.Marshal(c)
		if _, err := kv.Update(ctx, q, data, e.Revision()); err == nil {
			return nil
		} else if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) && !isWrongLastSeq(err) {
			return err
		}
	}
	return fmt.Errorf("update counters of queue %s: too much contention", q)
}

// QueueStats implements ipc.Backend.
func (b *IPC) QueueStats(ctx context.Context, name string) (ipc.QueueStats, error) {
	var st ipc.QueueStats
	if err := ipc.ValidateName("queue", name); err != nil {
		return st, err
	}
	what := "stats of queue " + name
	qm, err := b.queue(ctx, name, true)
	if err != nil {
		return st, err
	}
	si, err := qm.stream.Info(ctx, jetstream.WithSubjectFilter(queueSubjects(name)))
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return st, queueNotFound(name)
		}
		return st, opErr(ctx, what, err)
	}
	st.QueueConfig = qm.cfg
	st.Created = qm.created
	st.ByPriority = map[ipc.Priority]int{}
	total := int(si.State.Msgs)
	for _, p := range ipc.Priorities() {
		ci, err := qm.cons[p].Info(ctx)
		if err != nil {
			return st, opErr(ctx, what, err)
		}
		stored := int(si.State.Subjects[prioSubject(name, p)])
		inFlight := min(ci.NumAckPending, stored)
		st.InFlight += inFlight
		st.ByPriority[p] = stored - inFlight
	}
	st.Ready = max(total-st.InFlight, 0)
	if total > 0 {
		st.Oldest = si.State.FirstTime
	}
	if dlq, err := b.js.Stream(ctx, dlqStream(name)); err == nil {
		st.Dead = int(dlq.CachedInfo().State.Msgs)
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return st, opErr(ctx, what, err)
	}
	c, err := b.getCounters(ctx, name)
	if err != nil {
		return st, opErr(ctx, what, err)
	}
	st.Sent, st.Acked, st.Dropped = c.Sent, c.Acked, c.Dropped
	return st, nil
}

// ---- messages ----

// encodeMsg makes the stored form of o. Its id is its stream sequence (as
// the local backend's ids are its row numbers); only a dead letter, or a
// message redriven from the dead letters, carries the id of the original
// message in a header.
func encodeMsg(subject string, o ipc.Outgoing, t time.Time) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = o.Body
	p := o.Priority
	if p == "" {
		p = ipc.Normal
	}
	m.Header.Set(hdrTime, t.UTC().Format(time.RFC3339Nano))
	m.Header.Set(hdrPriority, string(p))
	if o.Sender != "" {
		m.Header.Set(hdrSender, o.Sender)
	}
	for k, v := range o.Headers {
		m.Header.Set(hdrUserPrefix+k, v)
	}
	return m
}

// decodeMsg fills the fields of an ipc.Message from a stored message.
func decodeMsg(h nats.Header, data []byte, seq uint64, stored time.Time) ipc.Message {
	m := ipc.Message{ID: h.Get(hdrID), Seq: seq, Priority: ipc.Priority(h.Get(hdrPriority)), Sender: h.Get(hdrSender), Body: data}
	if m.Body == nil {
		m.Body = []byte{}
	}
	if m.Priority == "" {
		m.Priority = ipc.Normal
	}
	if m.ID == "" && seq > 0 {
		m.ID = strconv.FormatUint(seq, 10)
	}
	if t, err := time.Parse(time.RFC3339Nano, h.Get(hdrTime)); err == nil {
		m.Time = t
	} else {
		m.Time = stored
	}
	for k, vs := range h {
		if strings.HasPrefix(k, hdrUserPrefix) && len(vs) > 0 {
			if m.Headers == nil {
				m.Headers = map[string]string{}
			}
			m.Headers[strings.TrimPrefix(k, hdrUserPrefix)] = vs[0]
		}
	}
	m.Reason = h.Get(hdrReason)
	if n, err := strconv.Atoi(h.Get(hdrDeliveries)); err == nil {
		m.Deliveries = n
	}
	return m
}

func validateBatch(msgs []ipc.Outgoing) error {
	for i, m := range msgs {
		if err := ipc.ValidateOutgoing(m); err != nil {
			if len(msgs) > 1 {
				return fmt.Errorf("message %d: %w", i+1, err)
			}
			return err
		}
	}
	return nil
}
