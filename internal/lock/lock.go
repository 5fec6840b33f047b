// Package lock defines netops locks: named exclusive and shared (readers-writer)
// locks with FIFO grants, leases and fencing tokens, over pluggable backends
// (local SQLite + flock, NATS JetStream KV). Every backend passes the same
// conformance suite (internal/lock/locktest), so they mean the same thing.
package lock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Mode is how a lock is held.
type Mode string

const (
	Exclusive Mode = "exclusive" // one holder at a time
	Shared    Mode = "shared"    // many shared holders, no exclusive holder
)

// WaitForever asks Acquire to wait until the lock is granted or ctx ends.
const WaitForever time.Duration = -1

// Holder describes who holds or waits for a lock (shown by status).
type Holder struct {
	Owner   string `json:"owner"`
	Host    string `json:"host"`
	PID     int    `json:"pid"`
	Command string `json:"command,omitempty"`
}

// Request asks for a lock.
type Request struct {
	Name string
	Mode Mode
	Holder
	// TTL is the lease: a grant not renewed within TTL is expired and freed.
	// Zero means the backend default (DefaultTTL).
	TTL time.Duration
	// Wait is how long to wait for the grant: 0 = do not wait, WaitForever, or
	// a duration. On timeout Acquire returns ErrTimeout and leaves no ticket.
	Wait time.Duration
	// Session, when true, ties the grant to this process as well: the local
	// backend frees it at once if the process dies (flock), before the TTL.
	// `lock run` uses it; `lock acquire` (lock now, release in a later
	// command) does not.
	Session bool
	// Slots > 0 makes a shared request a counting semaphore: it is granted
	// only while fewer than Slots earlier tickets of the lock are live, so
	// at most Slots such holders at once (FIFO still). Exclusive requests
	// on the same name still exclude everyone. Every user of a semaphore
	// should ask for the same Slots. 0 = no limit (a plain shared lock).
	Slots int
}

// MaxSlots bounds Request.Slots.
const MaxSlots = 10000

// DefaultTTL is the lease length when a request gives none.
const DefaultTTL = 30 * time.Second

// Lease is a granted lock.
type Lease struct {
	Name     string        `json:"name"`
	Mode     Mode          `json:"mode"`
	Owner    string        `json:"owner"`
	Token    uint64        `json:"token"`           // fencing token: strictly increasing per lock name
	Slots    int           `json:"slots,omitempty"` // semaphore size (shared mode only)
	Acquired time.Time     `json:"acquired"`
	Expires  time.Time     `json:"expires"`
	TTL      time.Duration `json:"ttl"`
}

// Entry is one holder or waiter in a lock's status.
type Entry struct {
	Lock string `json:"lock,omitempty"` // the lock's name (Cleanup lists entries of many locks)
	Holder
	Mode     Mode      `json:"mode"`
	Slots    int       `json:"slots,omitempty"`    // semaphore size (shared mode only)
	Token    uint64    `json:"token,omitempty"`    // holders only
	Position int       `json:"position,omitempty"` // waiters: 1 = next in line
	Since    time.Time `json:"since"`
	Expires  time.Time `json:"expires,omitzero"`
}

// Status is the state of one lock.
type Status struct {
	Name    string  `json:"name"`
	Holders []Entry `json:"holders"`
	Waiters []Entry `json:"waiters"`
}

// Cleaned reports what Cleanup removed. ExpiredLeases also lists grants
// whose process is gone (session grants, freed before their TTL).
type Cleaned struct {
	ExpiredLeases []Entry `json:"expired_leases"`
	DeadWaiters   []Entry `json:"dead_waiters"`
}

// Locker is a lock backend.
type Locker interface {
	// Acquire waits (per req.Wait) for the lock and returns the lease.
	// Re-acquiring a lock the same owner already holds in the same mode
	// returns the existing lease (reentrant, same token).
	Acquire(ctx context.Context, req Request) (*Lease, error)
	// Renew extends a held lease by its TTL from now and updates l.Expires;
	// ErrLost if it expired or was taken over.
	Renew(ctx context.Context, l *Lease) error
	// Release frees the lock held by owner; ErrNotHeld if owner holds nothing.
	Release(ctx context.Context, name, owner string) error
	// Status lists holders and waiters of name, or of every lock when name is "".
	Status(ctx context.Context, name string) ([]Status, error)
	// Cleanup removes leases expired for longer than olderThan and waiters
	// whose process is gone.
	Cleanup(ctx context.Context, olderThan time.Duration) (Cleaned, error)
	Close() error
}

// Errors every backend returns (wrapped, with details) so the CLI can map them
// to exit codes.
var (
	ErrTimeout     = errors.New("lock not acquired within the wait")
	ErrNotHeld     = errors.New("lock not held by this owner")
	ErrLost        = errors.New("lease lost")
	ErrUnavailable = errors.New("lock backend unavailable")
	ErrInvalid     = errors.New("invalid lock request")
)

// MaxNameLen bounds lock names (they become keys and file names).
const MaxNameLen = 128

// ValidateName checks a lock name: 1-128 characters from letters, digits and
// "-", "_", "."; no path separators, wildcards or leading dot.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty lock name", ErrInvalid)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: lock name is %d characters long, at most %d are allowed", ErrInvalid, len(name), MaxNameLen)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("%w: lock name %q starts with a dot", ErrInvalid, name)
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return fmt.Errorf("%w: lock name %q contains %q; use letters, digits, '-', '_' and '.'", ErrInvalid, name, c)
		}
	}
	return nil
}

// ValidateRequest checks a request before any backend sees it.
func ValidateRequest(req Request) error {
	if err := ValidateName(req.Name); err != nil {
		return err
	}
	if req.Mode != Exclusive && req.Mode != Shared {
		return fmt.Errorf("%w: mode %q (exclusive or shared)", ErrInvalid, req.Mode)
	}
	if req.Owner == "" {
		return fmt.Errorf("%w: empty owner", ErrInvalid)
	}
	switch {
	case req.Slots < 0 || req.Slots > MaxSlots:
		return fmt.Errorf("%w: semaphore size %d (1 to %d)", ErrInvalid, req.Slots, MaxSlots)
	case req.Slots > 0 && req.Mode != Shared:
		return fmt.Errorf("%w: a semaphore (%d slots) is a shared request, not %s", ErrInvalid, req.Slots, req.Mode)
	}
	if req.TTL < 0 {
		return fmt.Errorf("%w: negative TTL", ErrInvalid)
	}
	if req.TTL > 0 && req.TTL < MinTTL {
		return fmt.Errorf("%w: TTL %s is shorter than the minimum %s (the lease is renewed every TTL/3)", ErrInvalid, req.TTL, MinTTL)
	}
	if req.Wait < 0 && req.Wait != WaitForever {
		return fmt.Errorf("%w: negative wait", ErrInvalid)
	}
	return nil
}

// MinTTL is the shortest lease: renewals happen every TTL/3, so shorter
// leases would be lost to scheduling noise.
const MinTTL = 3 * time.Second
