// API-STABLE
//
// Package ipc defines netops messaging: durable work queues with priorities,
// visibility timeouts and dead letters, and publish/subscribe channels with
// durable subscribers, over pluggable backends (local SQLite, NATS
// JetStream). Every backend passes the same conformance suite
// (internal/ipc/ipctest), so "priority", "FIFO", "drop-oldest", "visibility
// timeout", "dead letter" and "durable" mean the same thing on every backend.
//
// # Queues
//
// A queue holds messages until one receiver acknowledges each. Receive
// returns the highest priority first, FIFO (send order) within a priority.
// A received message is in flight: invisible to other receivers until it is
// acknowledged (Ack: gone for good), negatively acknowledged (Nack: back in
// the queue after a delay) or its visibility timeout passes (back in the
// queue, as if the receiver had crashed). Each delivery counts; a message
// that was delivered MaxDeliveries times and is nacked again, or whose last
// visibility timeout passed (it moves at the latest during the next Receive
// on the queue), goes to the queue's dead-letter queue (DLQ), from which
// Redrive returns it. Delivery is at-least-once: a message can be
// delivered again only after its receiver nacked it or let its visibility
// timeout pass.
//
// A queue is bounded (MaxSize messages, in flight included, dead letters
// excluded). When a send would exceed it, the overflow policy decides: drop
// the oldest messages (by send order, whatever their priority) to make room,
// or reject the new message with ErrFull.
//
// # Channels
//
// A channel needs no creation. Publish appends to it; a subscriber reads
// the messages published after it subscribed. A durable subscriber (a name)
// keeps a cursor in the backend: when it subscribes again it first gets the
// messages published while it was away (at most ChannelRetention of them),
// from the first one it had not acknowledged. A non-durable subscriber sees
// live messages only.
package ipc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Priority is a message priority. Receive returns High before Normal before
// Low; within one priority, messages come in send order.
type Priority string

// Priorities, highest first.
const (
	High   Priority = "high"
	Normal Priority = "normal"
	Low    Priority = "low"
)

// Priorities lists the priorities, highest first.
func Priorities() []Priority { return []Priority{High, Normal, Low} }

// Rank orders priorities: High 3, Normal 2, Low 1, anything else 0.
func (p Priority) Rank() int {
	switch p {
	case High:
		return 3
	case Normal:
		return 2
	case Low:
		return 1
	}
	return 0
}

// PriorityOfRank is the inverse of Rank ("" for an unknown rank).
func PriorityOfRank(r int) Priority {
	switch r {
	case 3:
		return High
	case 2:
		return Normal
	case 1:
		return Low
	}
	return ""
}

// ParsePriority parses "high", "normal" or "low" (case-insensitive); ""
// is Normal.
func ParsePriority(s string) (Priority, error) {
	switch p := Priority(strings.ToLower(s)); p {
	case "":
		return Normal, nil
	case High, Normal, Low:
		return p, nil
	}
	return "", fmt.Errorf("%w: priority %q; use high, normal or low", ErrInvalid, s)
}

// Overflow is what a full queue does with a new message.
type Overflow string

// Overflow policies (the same strings as config.OverflowDropOldest and
// config.OverflowReject).
const (
	DropOldest Overflow = "drop-oldest" // drop the oldest messages to make room (default)
	Reject     Overflow = "reject"      // refuse the new message with ErrFull
)

// Defaults of a QueueConfig; WithDefaults fills them in.
const (
	// DefaultMaxSize equals config.DefaultQueueMaxSize.
	DefaultMaxSize = 1000
	// DefaultMaxDeliveries is how many times a message is delivered before
	// it goes to the dead-letter queue.
	DefaultMaxDeliveries = 5
	// DefaultVisibility is how long a received message stays invisible to
	// other receivers before it is delivered again, unless acknowledged or
	// extended.
	DefaultVisibility = 30 * time.Second
)

// Limits of every backend.
const (
	// MaxNameLen bounds queue, channel, sender and subscriber names.
	MaxNameLen = 64
	// MaxBodySize is the largest message body, in bytes (below NATS's
	// default 1 MiB max_payload, leaving room for headers).
	MaxBodySize = 1_000_000
	// MaxHeaders bounds the number of headers of one message.
	MaxHeaders = 32
	// MaxHeadersSize bounds the total size of keys and values of the
	// headers of one message, in bytes.
	MaxHeadersSize = 16 * 1024
	// MinVisibility is the shortest visibility timeout a queue may have.
	MinVisibility = time.Second
	// ChannelRetention is how many messages a channel keeps (the newest):
	// a durable subscriber away for longer than that misses the oldest.
	ChannelRetention = 10_000
)

// WaitForever asks Receive to wait until a message arrives or ctx ends.
const WaitForever time.Duration = -1

// QueueConfig describes a queue.
type QueueConfig struct {
	Name string `json:"name"`
	// MaxSize bounds the messages in the queue (ready and in flight; dead
	// letters are not counted). 0 means DefaultMaxSize.
	MaxSize  int      `json:"max_size"`
	Overflow Overflow `json:"overflow"` // "" means DropOldest
	// MaxDeliveries is how many deliveries a message gets before it goes
	// to the dead-letter queue. 0 means DefaultMaxDeliveries.
	MaxDeliveries int `json:"max_deliveries"`
	// Visibility is the visibility timeout. 0 means DefaultVisibility.
	Visibility time.Duration `json:"visibility"`
}

// WithDefaults returns c with zero fields set to their defaults.
func (c QueueConfig) WithDefaults() QueueConfig {
	if c.MaxSize == 0 {
		c.MaxSize = DefaultMaxSize
	}
	if c.Overflow == "" {
		c.Overflow = DropOldest
	}
	if c.MaxDeliveries == 0 {
		c.MaxDeliveries = DefaultMaxDeliveries
	}
	if c.Visibility == 0 {
		c.Visibility = DefaultVisibility
	}
	return c
}

// Validate checks c (after WithDefaults).
func (c QueueConfig) Validate() error {
	if err := ValidateName("queue", c.Name); err != nil {
		return err
	}
	switch {
	case c.MaxSize < 0:
		return fmt.Errorf("%w: queue %q: max size %d must be greater than 0", ErrInvalid, c.Name, c.MaxSize)
	case c.Overflow != "" && c.Overflow != DropOldest && c.Overflow != Reject:
		return fmt.Errorf("%w: queue %q: overflow policy %q; use drop-oldest or reject", ErrInvalid, c.Name, c.Overflow)
	case c.MaxDeliveries < 0:
		return fmt.Errorf("%w: queue %q: max deliveries %d must be greater than 0", ErrInvalid, c.Name, c.MaxDeliveries)
	case c.Visibility < 0 || (c.Visibility > 0 && c.Visibility < MinVisibility):
		return fmt.Errorf("%w: queue %q: visibility timeout %s is shorter than %s", ErrInvalid, c.Name, c.Visibility, MinVisibility)
	}
	return nil
}

// Outgoing is a message to send or publish.
type Outgoing struct {
	Priority Priority          // "" means Normal (channels ignore it but keep it)
	Sender   string            // who sent it (free text, at most MaxNameLen bytes)
	Headers  map[string]string // optional metadata
	Body     []byte
}

// Message is a stored message.
type Message struct {
	// ID is unique within the backend's queue or channel; opaque.
	ID string `json:"id"`
	// Seq orders messages of one queue or channel: later sends have larger
	// Seq (within a queue it is the FIFO order).
	Seq      uint64            `json:"seq"`
	Queue    string            `json:"queue,omitempty"`   // queue messages
	Channel  string            `json:"channel,omitempty"` // channel messages
	Priority Priority          `json:"priority"`
	Sender   string            `json:"sender"`
	Headers  map[string]string `json:"headers,omitempty"`
	Time     time.Time         `json:"time"` // when it was sent
	// Deliveries counts the deliveries of a queue message, this one
	// included (1 on the first Receive). 0 for Peek of a message never
	// delivered and for channel messages.
	Deliveries int `json:"deliveries"`
	// Reason is why a dead letter was dead-lettered (DeadLetters only).
	Reason string `json:"reason,omitempty"`
	Body   []byte `json:"-"`
}

// Delivery is a queue message handed to one receiver and not settled yet.
// Call exactly one of Ack or Nack (Extend any number of times before).
type Delivery interface {
	Message() *Message
	// Ack removes the message from the queue for good. When its
	// visibility timeout had passed and it was delivered again or dropped
	// meanwhile, Ack returns an error matching ErrLost (the message may be
	// processed twice); backends that cannot tell return nil.
	Ack(ctx context.Context) error
	// Nack returns the message to the queue, to be delivered again after
	// delay (0: at once). When this was its MaxDeliveries-th delivery it
	// goes to the dead-letter queue instead, with reason, and dead is
	// true.
	Nack(ctx context.Context, delay time.Duration, reason string) (dead bool, err error)
	// Extend restarts the visibility timeout from now (a handler that runs
	// long calls it every Visibility/3 or so). ErrLost as for Ack.
	Extend(ctx context.Context) error
}

// SendResult tells what Send stored.
type SendResult struct {
	// Messages are the stored messages, in the order given (ID, Seq and
	// Time filled in; no bodies).
	Messages []Message `json:"messages"`
	// Dropped is how many older messages drop-oldest removed to make room.
	Dropped int `json:"dropped"`
}

// ReceiveOptions tune Receive.
type ReceiveOptions struct {
	// Max is the most messages to return (0 means 1).
	Max int
	// Wait is how long to wait for the first message: 0 = do not wait,
	// WaitForever, or a duration. Once one message is there, Receive
	// returns what is available (up to Max) without waiting more.
	Wait time.Duration
}

// QueueStats is the state of a queue.
type QueueStats struct {
	QueueConfig
	Created time.Time `json:"created"`
	// Ready is the messages waiting for a receiver (including those whose
	// retry delay has not passed yet); ByPriority splits it.
	Ready      int              `json:"ready"`
	ByPriority map[Priority]int `json:"by_priority"`
	InFlight   int              `json:"in_flight"` // delivered, not settled, visibility not passed
	Dead       int              `json:"dead_letters"`
	// Oldest is when the oldest message (ready or in flight) was sent;
	// zero when the queue is empty.
	Oldest time.Time `json:"oldest,omitzero"`
	// Counters since the queue was created (best effort on backends that
	// cannot count exactly; never decreasing).
	Sent    uint64 `json:"sent"`
	Acked   uint64 `json:"acked"`
	Dropped uint64 `json:"dropped"`
}

// SubscribeOptions tune Subscribe.
type SubscribeOptions struct {
	// Durable names a durable subscriber; "" subscribes for live messages
	// only. The first Subscribe with a new name starts at the messages
	// published after it.
	Durable string
}

// Subscription reads a channel.
type Subscription interface {
	// Next returns the next message, waiting for one until ctx ends (then
	// it returns an error matching ctx.Err()).
	Next(ctx context.Context) (*Message, error)
	// Ack acknowledges m and every message before it on this
	// subscription: a durable subscriber that subscribes again starts
	// after the last acknowledged message. A no-op for non-durable ones.
	Ack(ctx context.Context, m *Message) error
	Close() error
}

// ChannelStats is the state of a channel.
type ChannelStats struct {
	Name      string    `json:"name"`
	Published uint64    `json:"published"` // messages published since the channel was first used
	Stored    int       `json:"stored"`    // messages kept (at most ChannelRetention)
	Last      time.Time `json:"last,omitzero"`
	// Subscribers lists the durable subscribers.
	Subscribers []SubscriberStats `json:"subscribers"`
}

// SubscriberStats is the state of a durable subscriber.
type SubscriberStats struct {
	Name    string `json:"name"`
	Pending int    `json:"pending"` // stored messages after its cursor
	// Acked is the Seq of the last message it acknowledged.
	Acked uint64 `json:"acked"`
	// Active is when it last subscribed or acknowledged.
	Active time.Time `json:"active,omitzero"`
}

// Backend stores queues and channels. Implementations are safe for
// concurrent use; many processes (or hosts) may use the same state at once.
// Errors wrap the Err* values below so callers can tell them apart.
type Backend interface {
	// CreateQueue creates a queue (cfg gets WithDefaults); ErrExists if a
	// queue with that name exists.
	CreateQueue(ctx context.Context, cfg QueueConfig) error
	// EnsureQueue creates the queue, or updates the settings of an existing
	// one to cfg (queues declared in the config file). A smaller MaxSize
	// applies from the next send.
	EnsureQueue(ctx context.Context, cfg QueueConfig) error
	// DeleteQueue deletes a queue with its messages and dead letters.
	DeleteQueue(ctx context.Context, name string) error
	// PurgeQueue deletes the messages of a queue (ready and in flight; not
	// the dead letters) and returns how many.
	PurgeQueue(ctx context.Context, name string) (int, error)
	// Queues lists the queues by name.
	Queues(ctx context.Context) ([]QueueConfig, error)
	// QueueStats returns the state of a queue.
	QueueStats(ctx context.Context, name string) (QueueStats, error)

	// Send stores msgs in a queue, in order. With overflow reject it stops
	// at the first message that does not fit and returns what was stored
	// along with an error matching ErrFull. Every message is validated
	// (ValidateOutgoing) before any is stored.
	Send(ctx context.Context, queue string, msgs []Outgoing) (SendResult, error)
	// Receive delivers up to opts.Max messages, highest priority first,
	// FIFO within a priority. It returns no deliveries and no error when
	// opts.Wait passes without a message.
	Receive(ctx context.Context, queue string, opts ReceiveOptions) ([]Delivery, error)
	// AckAll acknowledges deliveries of this backend (as Delivery.Ack each,
	// in one round trip where the backend can).
	AckAll(ctx context.Context, ds []Delivery) error
	// Peek returns up to limit ready messages in delivery order, with
	// bodies, without delivering them.
	Peek(ctx context.Context, queue string, limit int) ([]Message, error)
	// DeadLetters returns up to limit dead letters of a queue, oldest
	// first, with bodies.
	DeadLetters(ctx context.Context, queue string, limit int) ([]Message, error)
	// Redrive moves up to limit dead letters (limit <= 0: all) back into the
	// queue, oldest first, with their delivery count reset, and returns how
	// many. They keep their priority; the overflow policy applies.
	Redrive(ctx context.Context, queue string, limit int) (int, error)

	// Publish appends msgs to a channel, in order, and returns them (ID,
	// Seq and Time filled in; no bodies).
	Publish(ctx context.Context, channel string, msgs []Outgoing) ([]Message, error)
	// Subscribe starts reading a channel. Use one durable name per reader:
	// which messages two Subscriptions with the same durable name get when
	// open at the same time is undefined (each gets some, none is lost).
	Subscribe(ctx context.Context, channel string, opts SubscribeOptions) (Subscription, error)
	// Channels lists the channels that have messages or durable
	// subscribers, by name.
	Channels(ctx context.Context) ([]ChannelStats, error)
	// DeleteSubscriber removes a durable subscriber; ErrNotFound if none.
	DeleteSubscriber(ctx context.Context, channel, durable string) error

	Close() error
}

// Errors every backend returns (wrapped, with details) so the CLI can map
// them to exit codes.
var (
	ErrInvalid     = errors.New("invalid ipc request")
	ErrNotFound    = errors.New("not found")
	ErrExists      = errors.New("already exists")
	ErrFull        = errors.New("queue full")
	ErrTooLarge    = errors.New("message too large")
	ErrLost        = errors.New("delivery lost: the visibility timeout passed")
	ErrUnavailable = errors.New("ipc backend unavailable")
	ErrUnsupported = errors.New("not supported by this backend")
)

// ValidateName checks a queue, channel or subscriber name (what is "queue",
// "channel", ...): 1-64 characters from letters, digits, '_' and '-',
// starting with a letter or digit (the rule of names in the config file).
func ValidateName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty %s name", ErrInvalid, what)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %s name %q is %d characters long; use at most %d", ErrInvalid, what, name, len(name), MaxNameLen)
	}
	if c := name[0]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
		return fmt.Errorf("%w: %s name %q must start with a letter or digit", ErrInvalid, what, name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %s name %q contains %q; use letters, digits, '_' and '-'", ErrInvalid, what, name, c)
		}
	}
	return nil
}

// ValidateOutgoing checks a message before it is stored: a valid priority,
// a sender of at most MaxNameLen bytes without control characters, a body
// of at most MaxBodySize bytes of UTF-8 text without NUL bytes, and at most
// MaxHeaders headers (keys like names plus '.', values without control
// characters, MaxHeadersSize in all). Bodies are text so that every message
// prints safely as a line or JSON; send binary data base64-encoded.
func ValidateOutgoing(m Outgoing) error {
	if m.Priority != "" && m.Priority.Rank() == 0 {
		return fmt.Errorf("%w: priority %q; use high, normal or low", ErrInvalid, m.Priority)
	}
	if len(m.Sender) > MaxNameLen {
		return fmt.Errorf("%w: sender %q is longer than %d bytes", ErrInvalid, m.Sender, MaxNameLen)
	}
	if hasControl(m.Sender) || !utf8.ValidString(m.Sender) {
		return fmt.Errorf("%w: sender %q contains control characters or invalid UTF-8", ErrInvalid, m.Sender)
	}
	if len(m.Body) > MaxBodySize {
		return fmt.Errorf("%w: body is %d bytes, at most %d are allowed", ErrTooLarge, len(m.Body), MaxBodySize)
	}
	if err := ValidateBody(m.Body); err != nil {
		return err
	}
	if len(m.Headers) > MaxHeaders {
		return fmt.Errorf("%w: %d headers, at most %d are allowed", ErrInvalid, len(m.Headers), MaxHeaders)
	}
	size := 0
	for k, v := range m.Headers {
		size += len(k) + len(v)
		if err := validateHeaderKey(k); err != nil {
			return err
		}
		if hasControl(v) || !utf8.ValidString(v) {
			return fmt.Errorf("%w: header %q: value contains control characters or invalid UTF-8", ErrInvalid, k)
		}
	}
	if size > MaxHeadersSize {
		return fmt.Errorf("%w: headers are %d bytes, at most %d are allowed", ErrTooLarge, size, MaxHeadersSize)
	}
	return nil
}

// ValidateBody checks that b is UTF-8 text without NUL bytes.
func ValidateBody(b []byte) error {
	for i, c := range b {
		if c == 0 {
			return fmt.Errorf("%w: body contains a NUL byte at offset %d: message bodies are text (encode binary data, e.g. base64)", ErrInvalid, i)
		}
	}
	if !utf8.Valid(b) {
		return fmt.Errorf("%w: body is not valid UTF-8: message bodies are text (encode binary data, e.g. base64)", ErrInvalid)
	}
	return nil
}

func validateHeaderKey(k string) error {
	if k == "" || len(k) > MaxNameLen {
		return fmt.Errorf("%w: header name %q must be 1-%d characters", ErrInvalid, k, MaxNameLen)
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("%w: header name %q contains %q; use letters, digits, '_', '-' and '.'", ErrInvalid, k, c)
		}
	}
	return nil
}

func hasControl(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}

// P2PQueue is the queue that carries point-to-point messages from peer
// from to peer to: "<from>_to_<to>", as in the reference chapter. A
// conversation between A and B is two queues, A_to_B and B_to_A.
func P2PQueue(from, to string) (string, error) {
	if err := ValidateName("peer", from); err != nil {
		return "", err
	}
	if err := ValidateName("peer", to); err != nil {
		return "", err
	}
	q := from + "_to_" + to
	if err := ValidateName("queue", q); err != nil {
		return "", fmt.Errorf("%w: peer names %q and %q are too long together (queue %q)", ErrInvalid, from, to, q)
	}
	return q, nil
}
