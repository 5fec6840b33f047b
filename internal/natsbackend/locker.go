package natsbackend

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/lock"
)

// Defaults for Options.
const (
	DefaultBucket    = "netops_locks"
	DefaultMarkerTTL = time.Minute
)

// releaseMarkerTTL is how long the purge marker of a released ticket
// stays: live watches see it at once, and a waiter resyncs every TTL/3 in
// case its watch missed it, so it need not stay long. Short-lived markers
// keep the reads of a busy lock small: every owner leaves one.
const releaseMarkerTTL = time.Second

// ErrUnsupported marks a NATS server that lacks what the lock backend
// needs (JetStream, per-key TTL). Errors wrapping it also wrap
// lock.ErrUnavailable.
var ErrUnsupported = errors.New("NATS server not supported")

// Options configure NewLocker.
type Options struct {
	// Bucket is the KV bucket holding the tickets (default DefaultBucket).
	Bucket string
	// Replicas is the bucket's replica count when netops creates it
	// (default 1; 3 on a 3-node cluster survives the loss of one node).
	Replicas int
	// MarkerTTL is the bucket's LimitMarkerTTL when netops creates it: how
	// long the marker left by an expired ticket is kept (default
	// DefaultMarkerTTL). Released tickets leave markers of 1s.
	MarkerTTL time.Duration
	// CloseConn makes Close close the NATS connection too.
	CloseConn bool
}

// Locker is the NATS JetStream lock backend; it implements lock.Locker.
// It is safe for concurrent use.
type Locker struct {
	nc        *nats.Conn
	js        jetstream.JetStream
	kv        jetstream.KeyValue
	bucket    string
	prefix    string // subject prefix of the bucket's keys: "$KV.<bucket>."
	directGet string // direct get subject of the bucket's stream
	closeConn bool
	host      string
	pid       int

	mu     sync.Mutex
	known  map[string]known // ticket key -> last write of this process
	closed bool
}

// known is the last ticket this process wrote under a key.
type known struct {
	rev uint64
	t   ticket
}

var _ lock.Locker = (*Locker)(nil)

// Open connects to the NATS backend of cfg (see Connect) and returns a
// Locker that closes the connection on Close.
func Open(ctx context.Context, cfg config.Backend, name string, o Options) (*Locker, error) {
	nc, err := Connect(ctx, cfg, name)
	if err != nil {
		return nil, err
	}
	o.CloseConn = true
	l, err := NewLocker(ctx, nc, o)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return l, nil
}

// NewLocker returns a Locker on nc, creating the KV bucket if needed (file
// storage, history 1, LimitMarkerTTL, o.Replicas). A bucket that exists is
// used as it is, except that LimitMarkerTTL is turned on if it was off.
// A server older than 2.11 (no per-key TTL) or without JetStream gives an
// error wrapping ErrUnsupported and lock.ErrUnavailable.
func NewLocker(ctx context.Context, nc *nats.Conn, o Options) (*Locker, error) {
	if o.Bucket == "" {
		o.Bucket = DefaultBucket
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.MarkerTTL == 0 {
		o.MarkerTTL = DefaultMarkerTTL
	}
	if o.Replicas < 1 || o.Replicas > 5 {
		return nil, fmt.Errorf("%w: NATS lock bucket replicas must be 1 to 5, not %d", ErrConfig, o.Replicas)
	}
	if o.MarkerTTL < time.Second {
		return nil, fmt.Errorf("%w: NATS lock bucket marker TTL must be at least 1s", ErrConfig)
	}
	where := nc.ConnectedUrlRedacted()
	if err := checkServerVersion(nc.ConnectedServerVersion(), where); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, unavailable(fmt.Sprintf("NATS at %s: %v", where, err), err)
	}
	kv, err := openBucketRetry(ctx, js, o)
	if err != nil {
		return nil, bucketError(where, o.Bucket, nc.ConnectedServerVersion(), err)
	}
	host, _ := os.Hostname()
	return &Locker{
		nc:        nc,
		js:        js,
		kv:        kv,
		bucket:    o.Bucket,
		prefix:    "$KV." + o.Bucket + ".",
		directGet: "$JS.API.DIRECT.GET.KV_" + o.Bucket,
		closeConn: o.CloseConn,
		host:      host,
		pid:       os.Getpid(),
		known:     make(map[string]known),
	}, nil
}

// openRetryFor bounds how long opening the bucket waits out a cluster
// that cannot answer yet: a JetStream leader being elected after a node
// died, or a new cluster that has not elected its meta leader.
const (
	openRetryFor = 30 * time.Second
	openAttempt  = 5 * time.Second
)

// openBucketRetry is openBucket, retried while the failure is transient.
func openBucketRetry(ctx context.Context, js jetstream.JetStream, o Options) (jetstream.KeyValue, error) {
	return retryJS(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return openBucket(ctx, js, o) })
}

// retryJS runs fn, each attempt bounded by openAttempt, again while its
// failure is transient (see transientJS), for at most openRetryFor or until
// ctx ends.
func retryJS[T any](ctx context.Context, fn func(context.Context) (T, error)) (T, error) {
	give := time.Now().Add(openRetryFor)
	wait := 250 * time.Millisecond
	for {
		// Each attempt gets its own timeout: a request sent before the
		// cluster has a leader may never be answered, a new one will be.
		actx, cancel := context.WithTimeout(ctx, openAttempt)
		v, err := fn(actx)
		cancel()
		if err == nil || !transientJS(ctx, err) || time.Now().Add(wait).After(give) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// transientJS reports whether a JetStream API error is worth retrying: a
// request that timed out (ctx itself still live) or a 503 answer such as
// "JetStream system temporarily unavailable" while a cluster elects a leader.
func transientJS(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
		return true
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && api.Code == 503
}

func openBucket(ctx context.Context, js jetstream.JetStream, o Options) (jetstream.KeyValue, error) {
	cfg := jetstream.KeyValueConfig{
		Bucket:         o.Bucket,
		Description:    "netops locks: one ticket per (lock, owner); see internal/natsbackend",
		History:        1,
		Storage:        jetstream.FileStorage,
		Replicas:       o.Replicas,
		LimitMarkerTTL: o.MarkerTTL,
	}
	kv, err := js.KeyValue(ctx, o.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, o.Bucket) // created by another process meanwhile
		}
	}
	if err != nil {
		return nil, err
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, err
	}
	if st.LimitMarkerTTL() > 0 {
		return kv, nil
	}
	// A bucket made by hand or by an older netops: turn per-key TTL on,
	// keeping its replica count.
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok {
		cfg.Replicas = bs.StreamInfo().Config.Replicas
		cfg.History = uint8(min(max(st.History(), 1), 64))
		cfg.Storage = bs.StreamInfo().Config.Storage
	}
	if _, err := js.UpdateKeyValue(ctx, cfg); err != nil {
		return nil, fmt.Errorf("bucket %s exists without per-key TTL and cannot be updated: %w", o.Bucket, err)
	}
	return js.KeyValue(ctx, o.Bucket)
}

func bucketError(where, bucket, version string, err error) error {
	switch {
	case errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported):
		return unsupported(fmt.Sprintf("NATS server %s at %s does not support per-key TTL (needs nats-server >= 2.11)", version, where), err)
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount),
		errors.Is(err, nats.ErrNoResponders): // nobody serves the JetStream API
		return unsupported(fmt.Sprintf("JetStream is not enabled on the NATS server at %s for this account (run nats-server with -js, or netops server)", where), err)
	}
	return unavailable(fmt.Sprintf("NATS at %s: lock bucket %s: %v", where, bucket, err), err)
}

// checkServerVersion rejects servers older than 2.11, which lack per-key
// (per-message) TTLs.
func checkServerVersion(v, where string) error {
	major, minor, ok := parseVersion(v)
	if !ok {
		return nil // unknown: let the bucket setup decide
	}
	if major < 2 || major == 2 && minor < 11 {
		return unsupported(fmt.Sprintf("NATS server %s at %s does not support per-key TTL (needs nats-server >= 2.11)", v, where), nil)
	}
	return nil
}

func parseVersion(v string) (major, minor int, ok bool) {
	v = strings.TrimPrefix(v, "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return major, minor, true
}

func unsupported(msg string, cause error) error {
	errs := []error{ErrUnsupported, lock.ErrUnavailable}
	if cause != nil {
		errs = append(errs, cause)
	}
	return &backendError{msg: msg, errs: errs}
}

// Close releases the Locker (and the connection with Options.CloseConn).
// Held leases stay held until released or expired.
func (l *Locker) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.closeConn {
		l.nc.Close()
	}
	return nil
}

// ticket is the JSON value of a ticket key.
type ticket struct {
	V       int       `json:"v"`
	Name    string    `json:"name"`
	Owner   string    `json:"owner"`
	Host    string    `json:"host,omitempty"`
	PID     int       `json:"pid,omitempty"`
	Command string    `json:"command,omitempty"`
	Mode    lock.Mode `json:"mode"`
	// Slots is the semaphore size of a shared ticket (0: no limit).
	Slots int `json:"slots,omitempty"`
	// Token is the revision of the ticket's first write (its place in the
	// queue and its fencing token). The first write cannot know it and
	// leaves it 0; every later write carries it.
	Token     uint64    `json:"token,omitempty"`
	Granted   bool      `json:"granted,omitempty"`
	Queued    time.Time `json:"queued"`
	GrantedAt time.Time `json:"granted_at,omitzero"`
	TTLMillis int64     `json:"ttl_ms"`
	Expires   time.Time `json:"expires"`
}

func (t *ticket) holder() lock.Holder {
	return lock.Holder{Owner: t.Owner, Host: t.Host, PID: t.PID, Command: t.Command}
}

// slot is a ticket as read from the bucket: enough to apply the grant rule.
type slot struct {
	key     string
	order   uint64 // place in the queue: the token
	rev     uint64 // revision of the last write
	created time.Time
	t       ticket
	corrupt bool
	deleted bool // the key's last message is a delete, purge or expiry marker
}

// decode reads a ticket entry of a watch or a Get.
func decode(e jetstream.KeyValueEntry) (slot, error) {
	return decodeValue(e.Key(), e.Value(), e.Revision(), e.Created())
}

// decodeValue reads a ticket written at revision rev and time created.
func decodeValue(key string, data []byte, rev uint64, created time.Time) (slot, error) {
	s := slot{key: key, order: rev, rev: rev, created: created}
	if err := json.Unmarshal(data, &s.t); err != nil || s.t.Mode != lock.Exclusive && s.t.Mode != lock.Shared {
		// Unreadable: it blocks like an exclusive holder until it expires
		// or cleanup removes it.
		if err == nil {
			err = fmt.Errorf("mode %q", s.t.Mode)
		}
		s.corrupt = true
		s.t = ticket{Name: nameOfKey(key), Owner: "?", Mode: lock.Exclusive, Granted: true, GrantedAt: created}
		return s, fmt.Errorf("unreadable lock entry %s: %w", key, err)
	}
	if s.t.Token != 0 {
		s.order = s.t.Token
	}
	return s, nil
}

// lockKey maps a lock name to one key token: names may contain dots
// (subject separators) but never '=', which KV keys allow.
func lockKey(name string) string { return strings.ReplaceAll(name, ".", "=") }

// ownerKey maps an owner (any string) to a short key token.
func ownerKey(owner string) string {
	sum := sha256.Sum256([]byte(owner))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// nameOfKey returns the lock name of a ticket key.
func nameOfKey(key string) string {
	return strings.ReplaceAll(strings.SplitN(key, ".", 2)[0], "=", ".")
}

func ticketKey(name, owner string) string { return lockKey(name) + "." + ownerKey(owner) }

// leaseTTL rounds a lease up to whole seconds (NATS message TTLs are).
func leaseTTL(d time.Duration) time.Duration {
	if d == 0 {
		d = lock.DefaultTTL
	}
	return (d + time.Second - 1).Truncate(time.Second)
}

func (l *Locker) remember(key string, rev uint64, t ticket) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.known[key] = known{rev: rev, t: t}
}

func (l *Locker) forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.known, key)
}

func (l *Locker) recall(key string) (known, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k, ok := l.known[key]
	return k, ok
}

func (l *Locker) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

var errClosed = errors.New("NATS lock backend is closed")

// opError wraps an error of a NATS operation: when ctx was cancelled, or
// its deadline passed while connected, the error is ctx's; anything else
// means the backend is unavailable (lock.ErrUnavailable).
func (l *Locker) opError(ctx context.Context, what string, err error) error {
	where := l.nc.ConnectedUrlRedacted()
	if where == "" {
		where = redactURLs(l.nc.Servers())
	}
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(cerr, context.DeadlineExceeded) && !l.nc.IsConnected() {
			return unavailable(fmt.Sprintf("%s: NATS at %s is unreachable", what, where), cerr)
		}
		return fmt.Errorf("%s: %w", what, cerr) // the caller's context ended
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", what, err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
		return unavailable(fmt.Sprintf("%s: NATS at %s did not answer in time", what, where), err)
	}
	return unavailable(fmt.Sprintf("%s: NATS at %s: %v", what, where, err), err)
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// casWrite writes t under key if the key's last revision is rev, with a
// fresh per-key TTL. When the revision moved on but the key still holds the
// same ticket (same token: another process of the same owner wrote it), it
// retries on the new revision. It returns lock.ErrLost when the ticket is
// gone or was replaced.
func (l *Locker) casWrite(ctx context.Context, key string, rev, token uint64, t ticket, ttl time.Duration) (uint64, error) {
	t.Token = token
	for range 16 {
		data, err := json.Marshal(t)
		if err != nil {
			return 0, err
		}
		m := &nats.Msg{Subject: l.prefix + key, Data: data, Header: nats.Header{}}
		ack, err := l.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(ttl))
		if err == nil {
			l.remember(key, ack.Sequence, t)
			return ack.Sequence, nil
		}
		if !isWrongLastSeq(err) {
			return 0, err
		}
		e, err := l.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			l.forget(key)
			return 0, lock.ErrLost
		}
		if err != nil {
			return 0, err
		}
		cur, err := decode(e)
		if err != nil || cur.order != token {
			l.forget(key)
			return 0, lock.ErrLost
		}
		if cur.t.Granted && !t.Granted {
			t.Granted, t.GrantedAt = true, cur.t.GrantedAt
		}
		rev = e.Revision()
	}
	return 0, fmt.Errorf("ticket %s: too many conflicting writes", key)
}

// remove deletes key if it still holds the ticket with token (a
// revision-checked purge whose marker expires after releaseMarkerTTL).
// removed is false when that ticket was already gone or replaced.
func (l *Locker) remove(ctx context.Context, key string, rev, token uint64) (removed bool, _ error) {
	for range 16 {
		err := l.kv.Purge(ctx, key, jetstream.LastRevision(rev), jetstream.PurgeTTL(releaseMarkerTTL))
		if err == nil {
			l.forget(key)
			return true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !isWrongLastSeq(err) {
			return false, err
		}
		e, err := l.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			l.forget(key)
			return false, nil
		}
		if err != nil {
			return false, err
		}
		cur, err := decode(e)
		if err != nil || cur.order != token {
			l.forget(key)
			return false, nil // replaced by a newer ticket: not ours to remove
		}
		rev = e.Revision()
	}
	return false, fmt.Errorf("ticket %s: too many conflicting writes", key)
}

// Watch creation: at most watchCreate per attempt, watchRetry between
// attempts.
const (
	watchCreate = 5 * time.Second
	watchRetry  = 250 * time.Millisecond
)

// errDeadline reports that the wait of an Acquire ended.
var errDeadline = errors.New("wait ended")

// watch starts a watch of filter that lives until ctx ends or stop is
// called. Creating it (a consumer request) takes at most watchCreate, and
// it gives up with errDeadline when deadline fires first: a request lost
// with a server that went away must not hang the Acquire.
func (l *Locker) watch(ctx context.Context, filter string, deadline <-chan time.Time) (jetstream.KeyWatcher, func(), error) {
	wctx, cancel := context.WithCancel(ctx)
	type result struct {
		w   jetstream.KeyWatcher
		err error
	}
	done := make(chan result, 1)
	go func() {
		w, err := l.kv.Watch(wctx, filter)
		done <- result{w, err}
	}()
	timer := time.NewTimer(watchCreate)
	defer timer.Stop()
	var err error
	select {
	case r := <-done:
		if r.err == nil {
			return r.w, func() { stopWatch(r.w); cancel() }, nil
		}
		cancel()
		return nil, nil, r.err
	case <-timer.C:
		err = fmt.Errorf("watch not created within %s: %w", watchCreate, context.DeadlineExceeded)
	case <-deadline:
		err = errDeadline
	}
	cancel()
	if r := <-done; r.w != nil {
		stopWatch(r.w)
	}
	return nil, nil, err
}

// stopWatch stops w and drains what its callback may still deliver, so
// that the callback never blocks on a full channel.
func stopWatch(w jetstream.KeyWatcher) {
	_ = w.Stop()
	go func() {
		for range w.Updates() {
		}
	}()
}

// Acquire queues a ticket for req.Name and waits, watching the lock's
// tickets, until the grant rule lets it through.
func (l *Locker) Acquire(ctx context.Context, req lock.Request) (*lock.Lease, error) {
	if err := lock.ValidateRequest(req); err != nil {
		return nil, err
	}
	if l.isClosed() {
		return nil, errClosed
	}
	if req.Host == "" {
		req.Host = l.host
	}
	if req.PID == 0 {
		req.PID = l.pid
	}
	ttl := leaseTTL(req.TTL)
	var deadline <-chan time.Time
	if req.Wait > 0 {
		tm := time.NewTimer(req.Wait)
		defer tm.Stop()
		deadline = tm.C
	}
	// A node going away (a failover: the stream elects a new leader, the
	// client reconnects) can fail a write or a watch for some seconds. A
	// request that may wait rides that out, until its wait ends or for
	// failoverBudget at most, then reports the backend unavailable.
	var riding time.Time // when the current run of unavailability began
	for {
		lease, again, err := l.acquireOnce(ctx, req, ttl, deadline)
		if err != nil && errors.Is(err, lock.ErrUnavailable) && req.Wait != 0 && ctx.Err() == nil && !l.nc.IsClosed() {
			if riding.IsZero() {
				riding = time.Now()
			}
			if time.Since(riding) < failoverBudget {
				select {
				case <-time.After(failoverRetry):
					continue
				case <-deadline:
					return nil, err
				case <-ctx.Done():
					return nil, fmt.Errorf("lock %q: %w", req.Name, ctx.Err())
				}
			}
		}
		if err == nil {
			riding = time.Time{}
		}
		if !again {
			return lease, err
		}
		// Our ticket vanished while we waited (it expired while NATS was
		// unreachable, or another process of the same owner released
		// it): queue again.
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("lock %q: %w", req.Name, err)
		}
	}
}

func (l *Locker) acquireOnce(ctx context.Context, req lock.Request, ttl time.Duration, deadline <-chan time.Time) (_ *lock.Lease, again bool, _ error) {
	key := ticketKey(req.Name, req.Owner)
	now := time.Now()
	t := ticket{
		V: 1, Name: req.Name, Owner: req.Owner, Host: req.Host, PID: req.PID, Command: req.Command,
		Mode: req.Mode, Slots: req.Slots, Queued: now, TTLMillis: ttl.Milliseconds(), Expires: now.Add(ttl),
	}
	data, err := json.Marshal(t)
	if err != nil {
		return nil, false, err
	}
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("lock %q: %w", req.Name, err)
	}
	// The queueing write is not cut short by ctx: its outcome must be
	// known, or a cancelled Acquire could leave a ticket behind.
	wctx, wcancel := writeContext(ctx)
	rev, err := l.kv.Create(wctx, key, data, jetstream.KeyTTL(ttl))
	wcancel()
	created := err == nil
	token := rev
	switch {
	case err == nil:
		l.remember(key, rev, t)
	case errors.Is(err, jetstream.ErrKeyExists):
		// This owner already holds or waits for the lock.
		e, err := l.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, true, nil
		}
		if err != nil {
			return nil, false, l.opError(ctx, fmt.Sprintf("lock %q", req.Name), err)
		}
		cur, err := decode(e)
		if err != nil {
			return nil, false, fmt.Errorf("lock %q: %w (remove it with netops lock cleanup)", req.Name, err)
		}
		if cur.t.Owner != req.Owner {
			return nil, false, fmt.Errorf("lock %q: ticket key %s belongs to owner %q, not %q", req.Name, key, cur.t.Owner, req.Owner)
		}
		if cur.t.Mode != req.Mode {
			state := "waits for"
			if cur.t.Granted {
				state = "holds"
			}
			return nil, false, fmt.Errorf("%w: owner %q already %s lock %q in %s mode; release it first", lock.ErrInvalid, req.Owner, state, req.Name, cur.t.Mode)
		}
		t, rev, token = cur.t, e.Revision(), cur.order
		if t.Granted {
			// Reentrant: the same lease, renewed.
			t.Expires = now.Add(ttl)
			t.TTLMillis = ttl.Milliseconds()
			if _, err := l.casWrite(ctx, key, rev, token, t, ttl); err != nil {
				if errors.Is(err, lock.ErrLost) {
					return nil, true, nil
				}
				return nil, false, l.opError(ctx, fmt.Sprintf("lock %q", req.Name), err)
			}
			return &lock.Lease{Name: req.Name, Mode: req.Mode, Slots: req.Slots, Owner: req.Owner, Token: token, Acquired: t.GrantedAt, Expires: now.Add(ttl), TTL: ttl}, false, nil
		}
		l.remember(key, rev, t)
	default:
		return nil, false, l.opError(ctx, fmt.Sprintf("lock %q: queue", req.Name), err)
	}

	// giveUp removes our ticket (if we made it) and returns err.
	giveUp := func(err error) (*lock.Lease, bool, error) {
		if created {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if k, ok := l.recall(key); ok {
				rev = k.rev
			}
			_, _ = l.remove(rctx, key, rev, token) // else it expires with its TTL
		}
		return nil, false, err
	}

	var state map[string]slot
	// blockers returns the earlier tickets that keep ours waiting; mine is
	// false when our ticket is not in state.
	blockers := func() (mine bool, blocking []slot) {
		me, ok := state[key]
		if !ok || me.deleted || me.order != token {
			return false, nil
		}
		var earlier []slot
		for k, s := range state {
			if k == key || s.deleted || s.order >= me.order {
				continue
			}
			earlier = append(earlier, s)
			if req.Mode == lock.Exclusive || s.t.Mode == lock.Exclusive {
				blocking = append(blocking, s)
			}
		}
		// A semaphore of N slots waits while N or more earlier tickets
		// live: every holder then has fewer than N holders before it.
		if req.Slots > 0 && len(earlier) >= req.Slots && len(blocking) == 0 {
			blocking = earlier
		}
		return true, blocking
	}
	timeout := func() (*lock.Lease, bool, error) {
		_, blocking := blockers()
		return giveUp(fmt.Errorf("%w: lock %q%s", lock.ErrTimeout, req.Name, describe(blocking)))
	}
	grant := func() (*lock.Lease, bool, error) {
		now := time.Now()
		if k, ok := l.recall(key); ok {
			rev = k.rev
		}
		t.Granted, t.GrantedAt = true, now
		t.Expires = now.Add(ttl)
		t.TTLMillis = ttl.Milliseconds()
		wctx, wcancel := writeContext(ctx)
		_, err := l.casWrite(wctx, key, rev, token, t, ttl)
		wcancel()
		if err != nil {
			if errors.Is(err, lock.ErrLost) {
				return nil, true, nil
			}
			return giveUp(l.opError(ctx, fmt.Sprintf("lock %q: grant", req.Name), err))
		}
		if err := ctx.Err(); err != nil {
			// Granted, but the caller is gone: free it at once.
			return giveUp(fmt.Errorf("lock %q: %w", req.Name, err))
		}
		return &lock.Lease{Name: req.Name, Mode: req.Mode, Slots: req.Slots, Owner: req.Owner, Token: token, Acquired: now, Expires: now.Add(ttl), TTL: ttl}, false, nil
	}

	// Fast path: one direct read of the lock's tickets. It decides only if
	// it shows our ticket (so every earlier write too); else the watch does.
	filter := lockKey(req.Name) + ".*"
	if snap, _, err := l.lastTickets(ctx, filter); err == nil {
		state = snap
		if mine, blocking := blockers(); mine {
			switch {
			case len(blocking) == 0:
				return grant()
			case req.Wait == 0:
				return timeout()
			}
		}
	}

	var w jetstream.KeyWatcher
	for w == nil {
		var (
			stop func()
			err  error
		)
		w, stop, err = l.watch(ctx, filter, deadline)
		switch {
		case err == nil:
			defer stop()
		case errors.Is(err, errDeadline):
			return timeout()
		case ctx.Err() != nil:
			return giveUp(fmt.Errorf("lock %q: %w", req.Name, ctx.Err()))
		case req.Wait == 0:
			return giveUp(l.opError(ctx, fmt.Sprintf("lock %q: watch", req.Name), err))
		default:
			// NATS is busy or unreachable for now (a node went away during
			// the request): try again until the wait or ctx ends.
			select {
			case <-time.After(watchRetry):
			case <-deadline:
				return timeout()
			case <-ctx.Done():
				return giveUp(fmt.Errorf("lock %q: %w", req.Name, ctx.Err()))
			}
		}
	}

	state = make(map[string]slot)
	initDone := false
	renew := time.NewTicker(ttl / 3)
	defer renew.Stop()

	// apply records what a watch says of a key, unless state already has
	// a later revision of it (from a resync).
	apply := func(e jetstream.KeyValueEntry) {
		if cur, ok := state[e.Key()]; ok && cur.rev >= e.Revision() {
			return
		}
		if e.Operation() != jetstream.KeyValuePut {
			state[e.Key()] = slot{key: e.Key(), rev: e.Revision(), deleted: true}
			return
		}
		state[e.Key()], _ = decode(e)
	}
	// resync merges a direct read into state, in case the watch missed a
	// deletion (a reconnect after the marker expired): per key, the later
	// revision wins; a key absent from the read had no message as of it.
	resync := func() {
		snap, upTo, err := l.lastTickets(ctx, filter)
		if err != nil || upTo == 0 {
			return
		}
		for k, s := range snap {
			if cur, ok := state[k]; !ok || cur.rev < s.rev {
				state[k] = s
			}
		}
		for k, cur := range state {
			if _, ok := snap[k]; !ok && cur.rev <= upTo {
				state[k] = slot{key: k, rev: upTo, deleted: true}
			}
		}
	}

	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return giveUp(l.opError(ctx, fmt.Sprintf("lock %q: watch", req.Name), nats.ErrConnectionClosed))
			}
			if e != nil {
				apply(e)
			} else {
				initDone = true
			}
			if !initDone {
				continue
			}
			mine, blocking := blockers()
			switch {
			case !mine:
				return nil, true, nil // our ticket expired or was replaced
			case len(blocking) == 0:
				return grant()
			case req.Wait == 0:
				return timeout()
			}
		case <-renew.C:
			k, ok := l.recall(key)
			if !ok {
				continue
			}
			t.Expires = time.Now().Add(ttl)
			if _, err := l.casWrite(ctx, key, k.rev, token, t, ttl); errors.Is(err, lock.ErrLost) {
				return nil, true, nil
			}
			// Other errors: NATS is unreachable for now; the ticket lives
			// until its TTL, and the watch tells if it goes.
			if !initDone {
				continue
			}
			resync()
			mine, blocking := blockers()
			switch {
			case !mine:
				return nil, true, nil
			case len(blocking) == 0:
				return grant()
			}
		case <-deadline:
			// Take in what already arrived before giving up.
			for drained := false; !drained; {
				select {
				case e, ok := <-w.Updates():
					if !ok {
						drained = true
					} else if e != nil {
						apply(e)
					} else {
						initDone = true
					}
				default:
					drained = true
				}
			}
			if mine, blocking := blockers(); initDone && mine && len(blocking) == 0 {
				return grant()
			}
			return timeout()
		case <-ctx.Done():
			return giveUp(fmt.Errorf("lock %q: %w", req.Name, ctx.Err()))
		}
	}
}

// describe says who blocks a request, for the timeout error.
func describe(blocking []slot) string {
	if len(blocking) == 0 {
		return ""
	}
	sort.Slice(blocking, func(i, j int) bool { return blocking[i].order < blocking[j].order })
	s := blocking[0]
	what := "waited for"
	if s.t.Granted {
		what = "held"
	}
	var b strings.Builder
	fmt.Fprintf(&b, " (%s %s by owner %s", what, s.t.Mode, s.t.Owner)
	if s.t.Host != "" {
		fmt.Fprintf(&b, " on host %s", s.t.Host)
	}
	if s.t.PID != 0 {
		fmt.Fprintf(&b, ", pid %d", s.t.PID)
	}
	if n := len(blocking) - 1; n > 0 {
		fmt.Fprintf(&b, ", and %d more", n)
	}
	b.WriteString(")")
	return b.String()
}

// Renew extends a held lease by its TTL from now with a revision-checked
// write carrying a fresh per-key TTL.
func (l *Locker) Renew(ctx context.Context, le *lock.Lease) error {
	if le == nil {
		return fmt.Errorf("%w: nil lease", lock.ErrInvalid)
	}
	if err := lock.ValidateName(le.Name); err != nil {
		return err
	}
	if l.isClosed() {
		return errClosed
	}
	key := ticketKey(le.Name, le.Owner)
	ttl := leaseTTL(le.TTL)
	k, ok := l.recall(key)
	if !ok || k.t.Token != le.Token && k.t.Token != 0 {
		e, err := l.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("%w: lock %q: owner %q holds it no more (expired or released)", lock.ErrLost, le.Name, le.Owner)
		}
		if err != nil {
			return l.opError(ctx, fmt.Sprintf("renew lock %q", le.Name), err)
		}
		cur, err := decode(e)
		if err != nil || cur.order != le.Token || !cur.t.Granted {
			return fmt.Errorf("%w: lock %q: owner %q holds it no more (taken over)", lock.ErrLost, le.Name, le.Owner)
		}
		k = known{rev: e.Revision(), t: cur.t}
	}
	now := time.Now()
	t := k.t
	t.Expires = now.Add(ttl)
	t.TTLMillis = ttl.Milliseconds()
	if _, err := l.casWrite(ctx, key, k.rev, le.Token, t, ttl); err != nil {
		if errors.Is(err, lock.ErrLost) {
			return fmt.Errorf("%w: lock %q: owner %q holds it no more (expired or taken over)", lock.ErrLost, le.Name, le.Owner)
		}
		return l.opError(ctx, fmt.Sprintf("renew lock %q", le.Name), err)
	}
	le.Expires = now.Add(ttl)
	le.TTL = ttl
	return nil
}

// Release removes owner's granted ticket with a revision-checked purge.
func (l *Locker) Release(ctx context.Context, name, owner string) error {
	if err := lock.ValidateName(name); err != nil {
		return err
	}
	if owner == "" {
		return fmt.Errorf("%w: empty owner", lock.ErrInvalid)
	}
	if l.isClosed() {
		return errClosed
	}
	key := ticketKey(name, owner)
	notHeld := fmt.Errorf("%w: owner %q does not hold lock %q", lock.ErrNotHeld, owner, name)
	if k, ok := l.recall(key); ok && k.t.Granted && k.t.Token != 0 {
		// Fast path: the revision this process wrote last.
		removed, err := l.remove(ctx, key, k.rev, k.t.Token)
		if err != nil {
			return l.opError(ctx, fmt.Sprintf("release lock %q", name), err)
		}
		if removed {
			return nil
		}
	}
	for range 16 {
		e, err := l.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return notHeld
		}
		if err != nil {
			return l.opError(ctx, fmt.Sprintf("release lock %q", name), err)
		}
		cur, err := decode(e)
		if err != nil {
			return fmt.Errorf("release lock %q: %w (remove it with netops lock cleanup)", name, err)
		}
		if cur.t.Owner != owner || !cur.t.Granted {
			return fmt.Errorf("%w (it is only waiting for it)", notHeld)
		}
		removed, err := l.remove(ctx, key, e.Revision(), cur.order)
		if err != nil {
			return l.opError(ctx, fmt.Sprintf("release lock %q", name), err)
		}
		if removed {
			return nil
		}
	}
	return fmt.Errorf("release lock %q: too many conflicting writes", name)
}

// snapshot returns the live tickets under filter by key: from one direct
// read when it can, else from a watch.
func (l *Locker) snapshot(ctx context.Context, filter string) (map[string]slot, error) {
	out, _, err := l.lastTickets(ctx, filter)
	if err == nil {
		maps.DeleteFunc(out, func(_ string, s slot) bool { return s.deleted })
	}
	if !errors.Is(err, errIncomplete) {
		return out, err
	}
	w, err := l.kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer stopWatch(w)
	out = make(map[string]slot)
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, nats.ErrConnectionClosed
			}
			if e == nil {
				return out, nil
			}
			out[e.Key()], _ = decode(e)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Status lists holders and waiters of name, or of every lock when name is
// "". Holders are the tickets marked granted, waiters the others in queue
// order; an unreadable entry shows as a holder owned by "?".
func (l *Locker) Status(ctx context.Context, name string) ([]lock.Status, error) {
	filter := jetstream.AllKeys
	if name != "" {
		if err := lock.ValidateName(name); err != nil {
			return nil, err
		}
		filter = lockKey(name) + ".*"
	}
	if l.isClosed() {
		return nil, errClosed
	}
	tickets, err := l.snapshot(ctx, filter)
	if err != nil {
		return nil, l.opError(ctx, "lock status", err)
	}
	byName := map[string][]slot{}
	for _, s := range tickets {
		n := s.t.Name
		if n == "" {
			n = nameOfKey(s.key)
		}
		byName[n] = append(byName[n], s)
	}
	out := []lock.Status{}
	for n, slots := range byName {
		sort.Slice(slots, func(i, j int) bool { return slots[i].order < slots[j].order })
		st := lock.Status{Name: n, Holders: []lock.Entry{}, Waiters: []lock.Entry{}}
		for _, s := range slots {
			if s.t.Granted {
				st.Holders = append(st.Holders, lock.Entry{Lock: n, Holder: s.t.holder(), Mode: s.t.Mode, Slots: s.t.Slots, Token: s.order, Since: s.t.GrantedAt, Expires: s.t.Expires})
			} else {
				st.Waiters = append(st.Waiters, lock.Entry{Lock: n, Holder: s.t.holder(), Mode: s.t.Mode, Slots: s.t.Slots, Position: len(st.Waiters) + 1, Since: s.t.Queued})
			}
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b lock.Status) int { return strings.Compare(a.Name, b.Name) })
	if name != "" && len(out) == 0 {
		out = append(out, lock.Status{Name: name, Holders: []lock.Entry{}, Waiters: []lock.Entry{}})
	}
	return out, nil
}

// Cleanup removes tickets whose lease expired more than olderThan ago and
// waiting tickets of processes on this host that no longer exist. The
// server removes expired tickets by itself within about a second; Cleanup
// is for the ones it keeps (unreadable entries, tickets written without a
// TTL) and for not waiting for it. Expiry is judged by the Expires the
// holder wrote, so a clock on this host ahead of the holder's by more than
// 2/3 of the TTL could remove a live lease (whose holder then gets
// lock.ErrLost on its next renewal): keep olderThan well above the skew.
func (l *Locker) Cleanup(ctx context.Context, olderThan time.Duration) (lock.Cleaned, error) {
	if l.isClosed() {
		return lock.Cleaned{}, errClosed
	}
	tickets, err := l.snapshot(ctx, jetstream.AllKeys)
	if err != nil {
		return lock.Cleaned{}, l.opError(ctx, "lock cleanup", err)
	}
	now := time.Now()
	res := lock.Cleaned{ExpiredLeases: []lock.Entry{}, DeadWaiters: []lock.Entry{}}
	for _, s := range tickets {
		// The expiry the holder wrote (by its clock); an unreadable entry
		// expires when written.
		expires := s.t.Expires
		if s.corrupt || expires.IsZero() {
			expires = s.created
		}
		var list *[]lock.Entry
		switch {
		case now.Sub(expires) > olderThan:
			list = &res.ExpiredLeases
		case !s.t.Granted && s.t.Host == l.host && s.t.Host != "" && !processAlive(s.t.PID):
			list = &res.DeadWaiters
		default:
			continue
		}
		removed, err := l.remove(ctx, s.key, s.rev, s.order)
		if err != nil {
			return res, l.opError(ctx, "lock cleanup", err)
		}
		if !removed {
			continue
		}
		*list = append(*list, lock.Entry{Lock: s.t.Name, Holder: s.t.holder(), Mode: s.t.Mode, Token: s.order, Since: s.t.Queued, Expires: s.t.Expires})
	}
	return res, nil
}

// Writes whose outcome Acquire must learn (queueing, grant) last at most
// writeTimeout, and at most writeGrace after the caller's context ended.
const (
	writeTimeout = 10 * time.Second
	writeGrace   = time.Second
)

// failoverBudget bounds how long an Acquire that may wait retries while the
// backend is unavailable; failoverRetry is the pause between tries.
const (
	failoverBudget = 30 * time.Second
	failoverRetry  = 500 * time.Millisecond
)

// writeContext returns the context of such a write.
func writeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(writeGrace, cancel) })
	return wctx, func() { stop(); cancel() }
}

// processAlive reports whether pid exists on this host.
func processAlive(pid int) bool {
	if pid <= 0 {
		return true // unknown: keep it
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
