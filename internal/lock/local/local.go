// Package local is the lock backend for one host: tickets in the netops
// SQLite state database (table lock_tickets) plus flock(2) on one file per
// ticket for liveness. Any number of netops processes on the host may use
// it at once.
//
// # Tickets and grants
//
// Every request is a row of lock_tickets. Its id (INTEGER PRIMARY KEY
// AUTOINCREMENT, never reused) is both its place in the FIFO queue of its
// lock and its fencing token. The grant rule (grantable) says which tickets
// may hold the lock: among the live tickets of a name, ordered by id, an
// exclusive ticket when it is first, a shared one when all before it are
// shared. Whoever looks at a queue (a new request, a waiter, a release that
// freed a grant) does it inside one BEGIN IMMEDIATE transaction
// (store.Update) that deletes dead tickets and grants every ticket the rule
// allows, so grants follow ticket order.
//
// # Liveness
//
// A ticket is dead when its lease expired (expires_ns passed, not renewed)
// or when it needs a live process and has none. Waiters always need one,
// and so do grants made with Request.Session: such a ticket has a lock file
// (locks/<name>.<random>.lock in the state directory, 0600 in a 0700
// directory) on which its process holds an exclusive flock for as long as
// the ticket lives. Anyone can tell a dead process: a non-blocking shared
// flock on its file succeeds (or the file is gone). A grant without Session
// (`lock acquire`) outlives its process and lasts until Release or its TTL.
//
// # Waiting
//
// A waiter does not poll the database. After each look at the queue it
// sleeps until the first of:
//   - the lock file of the nearest ticket ahead of it that conflicts with
//     it (the one just before an exclusive request; the last exclusive one
//     before a shared request) is unlocked: a goroutine blocks in
//     flock(LOCK_SH) on a separate descriptor and returns the moment that
//     process releases, gives up or dies. This wakes the waiter within about
//     a millisecond, and a release wakes one waiter, not the whole queue;
//   - when that ticket is a grant with no process behind it (a lease taken
//     without Session, freed by a later `lock release` or by Cleanup), or
//     for a semaphore ticket with more than one ticket in the way: the
//     lock's bell file rings (see ring) — inotify on Linux, one stat every
//     10 ms elsewhere;
//   - the earliest expiry among the leases ahead of it;
//   - a safety re-check every second (for changes nothing signals, such as
//     a session grant released by another process);
//   - its Wait deadline or the end of ctx: it then deletes its own ticket
//     (and closes its file) before returning.
//
// Woken, a waiter first reads its own ticket outside any transaction: the
// release that woke it has usually granted it already, and then it needs
// no write transaction at all. The first sleep uses the look that enqueue
// took when it made the ticket.
//
// A blocked flock cannot be cancelled, so the flock watchers are not tied
// to one Acquire: the Locker keeps one per watched file, shared by all its
// waits, and each ends by itself when that file's owner lets go (at the
// latest when its process exits). A wait that ends early leaves its watcher
// blocked until then, holding an OS thread; nothing else outlives a wait
// (the inotify reader ends when its descriptor is closed).
package local

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/netops-dev/netops/internal/fsutil"
	"github.com/netops-dev/netops/internal/lock"
	"github.com/netops-dev/netops/internal/store"
)

// LocksDir is the directory of lock files inside the state directory.
const LocksDir = "locks"

const (
	// bellPoll is how often a waiter behind a lease with no process looks
	// at the lock's bell file (one stat), where inotify is not available.
	bellPoll = 10 * time.Millisecond
	// recheck bounds every wait: a safety net for changes no file tells
	// about (a session grant released by another process).
	recheck = time.Second
	// cleanupTimeout bounds the removal of a ticket whose wait ended.
	cleanupTimeout = 10 * time.Second
	// orphanAge protects lock files just created from Cleanup's sweep of
	// files no ticket uses.
	orphanAge = time.Minute
)

// Locker is the local backend. It is safe for concurrent use; other
// processes may use the same state directory at the same time.
type Locker struct {
	st  *store.Store
	dir string // lock files

	mu       sync.Mutex
	closed   bool
	files    map[int64]*ownFile  // lock files of this Locker's tickets, by ticket id
	watchers map[string]*watcher // waits for lock files to be unlocked, by path
}

// ownFile is the lock file of one of this Locker's tickets: its exclusive
// flock says the ticket's process is alive.
type ownFile struct {
	f     *os.File
	path  string
	name  string // lock name
	owner string
}

type watcher struct {
	done chan struct{} // closed when the watched file is unlocked
}

var _ lock.Locker = (*Locker)(nil)

// New returns a Locker keeping tickets in st and lock files in
// dir/LocksDir; dir is the state directory st lives in. The Locker does not
// own st: close st after the Locker.
func New(st *store.Store, dir string) *Locker {
	return &Locker{
		st:       st,
		dir:      filepath.Join(dir, LocksDir),
		files:    map[int64]*ownFile{},
		watchers: map[string]*watcher{},
	}
}

var errNeedFile = errors.New("waiting needs a lock file")

// Acquire implements lock.Locker.
func (l *Locker) Acquire(ctx context.Context, req lock.Request) (*lock.Lease, error) {
	if err := lock.ValidateRequest(req); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("lock %q: %w", req.Name, err)
	}
	if err := l.checkOpen(); err != nil {
		return nil, err
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = lock.DefaultTTL
	}
	// A waiter and a session grant need a lock file; a lease granted at
	// once without Session does not, so the file is made only when needed.
	var own *ownFile
	if req.Session {
		var err error
		if own, err = l.createFile(req.Name, req.Owner); err != nil {
			return nil, err
		}
	}
	for {
		rung := fsutil.BellTime(l.bellPath(req.Name)) // before enqueue's look: see wait
		lease, id, busy, first, err := l.enqueue(ctx, req, ttl, own)
		switch {
		case errors.Is(err, errNeedFile):
			if own, err = l.createFile(req.Name, req.Owner); err != nil {
				return nil, err
			}
			continue
		case err != nil:
			l.discard(own)
			return nil, err
		case lease != nil && id != 0 && req.Session:
			l.keep(id, own)
			return lease, nil
		case lease != nil: // granted without session, or reentrant
			l.discard(own)
			return lease, nil
		case id == 0:
			l.discard(own)
			return nil, fmt.Errorf("%w: lock %q is %s", lock.ErrTimeout, req.Name, describeQueue(busy, 0))
		}
		l.keep(id, own)
		return l.wait(ctx, req, id, first, rung)
	}
}

// enqueue is Acquire's first transaction. It returns the lease when the
// lock is granted at once (id is 0 when the owner already held it); the new
// waiting ticket's id and its first look at the queue when the request
// waits; or no id and the queue when it must not wait.
func (l *Locker) enqueue(ctx context.Context, req lock.Request, ttl time.Duration, own *ownFile) (lease *lock.Lease, id int64, busy []ticket, first look, err error) {
	var dead []ticket
	err = l.st.Update(ctx, func(tx *sql.Tx) error {
		lease, id, busy, first, dead = nil, 0, nil, look{}, nil
		now := time.Now().UnixNano()
		live, d, err := l.evaluate(ctx, tx, req.Name, now)
		if err != nil {
			return err
		}
		dead = d
		for i := range live {
			t := &live[i]
			if t.owner != req.Owner || !t.held() {
				continue
			}
			if t.mode != req.Mode {
				return fmt.Errorf("%w: lock %q is held by %q in %s mode; release it before acquiring it in %s mode",
					lock.ErrInvalid, req.Name, req.Owner, t.mode, req.Mode)
			}
			// Reentrant: the same grant, its lease extended to at least
			// the requested TTL from now.
			if exp := now + int64(ttl); exp > t.expires {
				t.expires = exp
				if _, err := tx.ExecContext(ctx, "UPDATE lock_tickets SET expires_ns = ? WHERE id = ?", t.expires, t.id); err != nil {
					return err
				}
			}
			lease = t.lease()
			return nil
		}
		t := ticket{
			name: req.Name, mode: req.Mode, slots: req.Slots, owner: req.Owner,
			host: req.Host, pid: req.PID, command: req.Command,
			session: req.Session, state: stateWaiting, ttl: int64(ttl), created: now,
		}
		if own != nil {
			t.file = filepath.Base(own.path)
		}
		cs := append(claims(live), claim{req.Mode, req.Slots})
		switch {
		case grantable(cs) == len(cs):
			t.state, t.granted, t.expires = stateHeld, now, now+int64(ttl)
		case req.Wait == 0:
			busy = live
			return nil
		case own == nil:
			return errNeedFile
		}
		if err := insertTicket(ctx, tx, &t); err != nil {
			return err
		}
		id = t.id
		if t.held() {
			lease = t.lease()
		} else {
			first = l.waitLook(append(live, t), len(live))
		}
		return nil
	})
	l.removeFiles(dead)
	if err != nil && !errors.Is(err, errNeedFile) && !errors.Is(err, lock.ErrInvalid) {
		err = dbError(ctx, fmt.Sprintf("lock %q", req.Name), err)
	}
	return lease, id, busy, first, err
}

// dbError wraps an error from the state database for op. When ctx is done
// the failure is its doing (database/sql then fails the transaction with
// sql.ErrTxDone, which says nothing of the context), so the error names
// ctx's error and matches it.
func dbError(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%s: %w", op, cerr)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// look is what a waiter learned from one look at its queue.
type look struct {
	lease      *lock.Lease // granted
	gone       bool        // the ticket was deleted by someone else
	watch      string      // lock file of the first ticket in the way, "" if none to watch
	bellToo    bool        // listen to the bell as well as watch (a semaphore ticket, more than one ticket in the way)
	nextExpiry int64       // earliest expiry of a lease ahead, 0 if none
	queue      []ticket    // the live tickets
}

// check looks at the queue of name for waiting ticket id, granting what the
// grant rule allows.
func (l *Locker) check(ctx context.Context, name string, id int64) (look, error) {
	var lk look
	var dead []ticket
	err := l.st.Update(ctx, func(tx *sql.Tx) error {
		lk = look{}
		now := time.Now().UnixNano()
		live, d, err := l.evaluate(ctx, tx, name, now)
		if err != nil {
			return err
		}
		dead = d
		lk.queue = live
		me := -1
		for i := range live {
			if live[i].id == id {
				me = i
				break
			}
		}
		if me < 0 {
			lk.gone = true
			return nil
		}
		if t := live[me]; t.held() {
			lk.lease = t.lease()
			return nil
		}
		lk = l.waitLook(live, me)
		return nil
	})
	l.removeFiles(dead)
	if err != nil {
		return look{}, dbError(ctx, fmt.Sprintf("lock %q", name), err)
	}
	return lk, nil
}

// waitLook is the look of waiting ticket live[me] at its queue: what to
// watch, and when the next lease ahead expires.
func (l *Locker) waitLook(live []ticket, me int) look {
	lk := look{queue: live}
	t := live[me]
	// Watch the nearest ticket ahead that conflicts with this one:
	// each release then wakes one waiter, not the whole queue.
	blocker, conflicts := -1, 0
	for i, a := range live[:me] {
		// A semaphore ticket waits for any earlier one to go: watch
		// the nearest, and the bell (below).
		if t.mode == lock.Exclusive || a.mode == lock.Exclusive || t.slots > 0 && me >= t.slots {
			blocker = i
			conflicts++
		}
		if a.held() && (lk.nextExpiry == 0 || a.expires < lk.nextExpiry) {
			lk.nextExpiry = a.expires
		}
	}
	if blocker >= 0 {
		if b := live[blocker]; b.file != "" && (b.session || !b.held()) {
			lk.watch = l.path(b.file)
		}
	}
	// A semaphore ticket with more than one ticket in the way can be
	// granted by a release further ahead (a slot freed by another holder)
	// while the one watched stays: the bell says so. Any other ticket
	// cannot be granted while the one it watches is there (FIFO), and must
	// not wake on every release (a queue of exclusive waiters would all
	// look at once).
	lk.bellToo = t.slots > 0 && conflicts > 1
	return lk
}

// wait waits for waiting ticket id to be granted, per req.Wait and ctx.
// first, when it names a file to watch, is the look enqueue already took
// (with the bell as read before enqueue, firstRung): the first sleep needs
// no look of its own.
func (l *Locker) wait(ctx context.Context, req lock.Request, id int64, first look, firstRung time.Time) (*lock.Lease, error) {
	var deadline <-chan time.Time
	if req.Wait > 0 {
		t := time.NewTimer(req.Wait)
		defer t.Stop()
		deadline = t.C
	}
	bell := l.bellPath(req.Name)
	for {
		// Read the bell before looking, so that a release after the look
		// changes it (the first look, enqueue's, comes with the bell as
		// read before it).
		rung := fsutil.BellTime(bell)
		lk := first
		if lk.watch != "" {
			rung = firstRung
		}
		first = look{}
		if lk.watch == "" {
			var err error
			if lk, err = l.check(ctx, req.Name, id); err != nil {
				return nil, l.abandon(ctx, id, err)
			}
		}
		if lk.lease != nil {
			return l.granted(req, id, lk.lease), nil
		}
		if lk.gone {
			l.dropFile(id)
			return nil, fmt.Errorf("%w: lock %q: the waiting ticket of %q was removed by another process", lock.ErrLost, req.Name, req.Owner)
		}
		res := l.sleep(ctx, lk, bell, rung, deadline)
		switch {
		case res == woken:
			// A release grants the next tickets in its own transaction:
			// when this one is among them, a read says so, and the
			// waiter starts without taking the write lock.
			if lease := l.grantedAlready(ctx, id); lease != nil {
				return l.granted(req, id, lease), nil
			}
			continue
		case res == timedOut:
			// A last look: the lock may have come free just now.
			last, err := l.check(ctx, req.Name, id)
			if err == nil && last.lease != nil {
				return l.granted(req, id, last.lease), nil
			}
			if err == nil {
				lk = last
			}
			return nil, l.abandon(ctx, id, fmt.Errorf("%w: lock %q is %s; gave up after %s",
				lock.ErrTimeout, req.Name, describeQueue(lk.queue, id), req.Wait))
		default:
			return nil, l.abandon(ctx, id, fmt.Errorf("lock %q: %w", req.Name, ctx.Err()))
		}
	}
}

type sleepResult int

const (
	woken    sleepResult = iota // something changed: look again
	timedOut                    // the Wait deadline passed
	canceled                    // ctx is done
)

// sleep waits after a look at the queue (lk) until the queue may have
// changed: the lock file of the ticket in the way is unlocked, or (when
// there is no process to watch) the lock's bell rings, or the next lease
// ahead expires, or recheck passes.
func (l *Locker) sleep(ctx context.Context, lk look, bell string, rung time.Time, deadline <-chan time.Time) sleepResult {
	var wake <-chan struct{}
	if lk.watch != "" {
		wake = l.watch(lk.watch)
	}
	var rang <-chan struct{}
	var poll <-chan time.Time
	if wake == nil || lk.bellToo {
		var stop func()
		rang, stop = fsutil.WatchBell(bell, rung)
		defer stop()
		if rang == nil {
			t := time.NewTicker(bellPoll)
			defer t.Stop()
			poll = t.C
		}
	}
	delay := recheck
	if lk.nextExpiry != 0 {
		// A millisecond past the expiry, so that it has expired.
		delay = max(0, min(delay, time.Until(time.Unix(0, lk.nextExpiry))+time.Millisecond))
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-wake:
			return woken
		case <-rang:
			return woken
		case <-poll:
			if !fsutil.BellTime(bell).Equal(rung) {
				return woken
			}
		case <-timer.C:
			return woken
		case <-deadline:
			return timedOut
		case <-ctx.Done():
			return canceled
		}
	}
}

// granted finishes a wait: a grant without Session needs its lock file no
// longer.
func (l *Locker) granted(req lock.Request, id int64, lease *lock.Lease) *lock.Lease {
	if !req.Session {
		l.dropFile(id)
	}
	return lease
}

// grantedAlready returns the lease of ticket id when it is held and not
// expired, from a read outside any transaction (no write lock); nil
// otherwise, or on any error: the caller then looks the usual way. The read
// goes through the write pool on purpose: a `lock run` process has that
// connection open already, and the read-only pool would open a second one.
func (l *Locker) grantedAlready(ctx context.Context, id int64) *lock.Lease {
	ts, err := queryTickets(ctx, l.st.DB(), "WHERE id = ?", id)
	if err != nil || len(ts) != 1 || !ts[0].held() || ts[0].expires <= time.Now().UnixNano() {
		return nil
	}
	return ts[0].lease()
}

// abandon deletes the ticket of a wait that ended without the lock (even
// if it was granted meanwhile: nobody will use that grant) and returns
// cause. Closing the lock file makes the ticket dead in any case, so a
// failure to delete it leaves nothing that blocks others.
func (l *Locker) abandon(ctx context.Context, id int64, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	err := l.st.Update(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM lock_tickets WHERE id = ?", id)
		return err
	})
	l.dropFile(id)
	if err != nil {
		return fmt.Errorf("%w (and removing the waiting ticket: %v)", cause, err)
	}
	return cause
}

// Renew implements lock.Locker.
func (l *Locker) Renew(ctx context.Context, ls *lock.Lease) error {
	if ls == nil {
		return fmt.Errorf("%w: renew of a nil lease", lock.ErrInvalid)
	}
	if err := lock.ValidateName(ls.Name); err != nil {
		return err
	}
	var expires int64
	found := false
	err := l.st.Update(ctx, func(tx *sql.Tx) error {
		now := time.Now().UnixNano()
		err := tx.QueryRowContext(ctx, `UPDATE lock_tickets SET expires_ns = ? + ttl_ns
			WHERE id = ? AND name = ? AND owner = ? AND state = ? AND (expires_ns >= ? OR session = 1)
			RETURNING expires_ns`,
			now, int64(ls.Token), ls.Name, ls.Owner, stateHeld, now).Scan(&expires)
		found = err == nil
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return dbError(ctx, fmt.Sprintf("lock %q: renew", ls.Name), err)
	}
	if !found {
		l.dropFile(int64(ls.Token))
		return fmt.Errorf("%w: lock %q: the lease of %q (token %d) expired or was released", lock.ErrLost, ls.Name, ls.Owner, ls.Token)
	}
	ls.Expires = time.Unix(0, expires)
	return nil
}

// Release implements lock.Locker.
func (l *Locker) Release(ctx context.Context, name, owner string) error {
	if err := lock.ValidateName(name); err != nil {
		return err
	}
	if owner == "" {
		return fmt.Errorf("%w: empty owner", lock.ErrInvalid)
	}
	var released, expired, others, dead []ticket
	waiting := map[int64]bool{} // the owner's waiting tickets
	err := l.st.Update(ctx, func(tx *sql.Tx) error {
		released, expired, others, dead = nil, nil, nil, nil
		clear(waiting)
		ts, err := queryTickets(ctx, tx, "WHERE name = ? ORDER BY id", name)
		if err != nil {
			return err
		}
		now := time.Now().UnixNano()
		for i := range ts {
			t := &ts[i]
			switch {
			case !t.held():
				if t.owner == owner {
					waiting[t.id] = true
				}
			case t.owner == owner && t.expires >= now:
				released = append(released, *t)
			case t.owner == owner:
				expired = append(expired, *t)
			case l.alive(t, now):
				others = append(others, *t)
			}
		}
		if err := deleteTickets(ctx, tx, released); err != nil {
			return err
		}
		if err := deleteTickets(ctx, tx, expired); err != nil {
			return err
		}
		if len(released)+len(expired) == 0 || len(released)+len(expired) == len(ts) {
			return nil // nothing freed, or nobody else in the queue
		}
		// Grant the next tickets now (the waiters then only read, see
		// grantedAlready): the grant rule of check, applied by whoever
		// frees the lock.
		_, dead, err = l.evaluate(ctx, tx, name, now)
		return err
	})
	if err != nil {
		return dbError(ctx, fmt.Sprintf("lock %q: release", name), err)
	}
	l.removeFiles(dead)
	// This Locker's files of the owner's grants go even when the ticket
	// was already gone (expired, or released by another process).
	l.dropOwnerFiles(name, owner, waiting)
	l.removeFiles(append(released, expired...))
	if len(released)+len(expired) > 0 {
		l.ring(name)
	}
	switch {
	case len(released) > 0:
		return nil
	case len(expired) > 0:
		return fmt.Errorf("%w: lock %q: the lease of %q expired at %s (not renewed); held now by %s",
			lock.ErrNotHeld, name, owner, time.Unix(0, expired[0].expires).Format(time.RFC3339), describe(others))
	default:
		return fmt.Errorf("%w: lock %q is not held by %q; held by %s", lock.ErrNotHeld, name, owner, describe(others))
	}
}

// Status implements lock.Locker. It only reads: dead tickets are left out
// of the answer, not deleted.
func (l *Locker) Status(ctx context.Context, name string) ([]lock.Status, error) {
	if name != "" {
		if err := lock.ValidateName(name); err != nil {
			return nil, err
		}
	}
	var ts []ticket
	err := l.st.View(ctx, func(tx *sql.Tx) error {
		var err error
		if name == "" {
			ts, err = queryTickets(ctx, tx, "ORDER BY name, id")
		} else {
			ts, err = queryTickets(ctx, tx, "WHERE name = ? ORDER BY id", name)
		}
		return err
	})
	if err != nil {
		if name == "" {
			return nil, dbError(ctx, "lock status", err)
		}
		return nil, dbError(ctx, fmt.Sprintf("lock %q: status", name), err)
	}
	now := time.Now().UnixNano()
	var out []lock.Status
	for i := range ts {
		t := &ts[i]
		if !l.alive(t, now) {
			continue
		}
		if len(out) == 0 || out[len(out)-1].Name != t.name {
			out = append(out, lock.Status{Name: t.name, Holders: []lock.Entry{}, Waiters: []lock.Entry{}})
		}
		st := &out[len(out)-1]
		e := t.entry()
		if t.held() {
			st.Holders = append(st.Holders, e)
		} else {
			e.Position = len(st.Waiters) + 1
			st.Waiters = append(st.Waiters, e)
		}
	}
	if name != "" && len(out) == 0 {
		out = []lock.Status{{Name: name, Holders: []lock.Entry{}, Waiters: []lock.Entry{}}}
	}
	return out, nil
}

// Cleanup implements lock.Locker. Besides expired leases and dead waiters,
// it removes grants whose process is gone (listed with the expired leases)
// and lock files no ticket uses.
func (l *Locker) Cleanup(ctx context.Context, olderThan time.Duration) (lock.Cleaned, error) {
	if olderThan < 0 {
		return lock.Cleaned{}, fmt.Errorf("%w: negative age %s for lock cleanup", lock.ErrInvalid, olderThan)
	}
	var cl lock.Cleaned
	var removed []ticket
	var orphans []string
	err := l.st.Update(ctx, func(tx *sql.Tx) error {
		cl, removed, orphans = lock.Cleaned{}, nil, nil
		ts, err := queryTickets(ctx, tx, "ORDER BY name, id")
		if err != nil {
			return err
		}
		now := time.Now()
		nowNs := now.UnixNano()
		used := map[string]bool{}
		for i := range ts {
			used[ts[i].name+bellSuffix] = true
			t := &ts[i]
			switch {
			case t.held() && t.session && t.file != "" && l.alive(t, nowNs):
				// A session grant whose process (or command) still holds its
				// flock is alive whatever its expiry says.
				used[t.file] = true
				continue
			case t.held() && t.expires < nowNs-int64(olderThan):
				cl.ExpiredLeases = append(cl.ExpiredLeases, t.entry())
			case (t.held() && t.expires < nowNs) || l.alive(t, nowNs):
				if t.session || !t.held() {
					used[t.file] = true
				}
				continue
			case t.held():
				cl.ExpiredLeases = append(cl.ExpiredLeases, t.entry())
			default:
				cl.DeadWaiters = append(cl.DeadWaiters, t.entry())
			}
			removed = append(removed, *t)
		}
		if err := deleteTickets(ctx, tx, removed); err != nil {
			return err
		}
		// Inside the transaction, so that no ticket can start using a
		// file between this look and the removal.
		orphans = l.orphans(used, now)
		return nil
	})
	if err != nil {
		return lock.Cleaned{}, dbError(ctx, "lock cleanup", err)
	}
	l.removeFiles(removed)
	rung := map[string]bool{}
	for _, t := range removed {
		if !rung[t.name] {
			rung[t.name] = true
			l.ring(t.name)
		}
	}
	for _, p := range orphans {
		_ = os.Remove(p)
	}
	return cl, nil
}

// orphans lists lock files that no ticket uses, that nobody holds, and that
// are older than orphanAge (a file just created is not in the table yet),
// and the bells of locks that have no tickets and did not ring for as long.
func (l *Locker) orphans(used map[string]bool, now time.Time) []string {
	des, err := os.ReadDir(l.dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, de := range des {
		n := de.Name()
		if used[n] || !de.Type().IsRegular() || !strings.HasSuffix(n, ".lock") && !strings.HasSuffix(n, bellSuffix) {
			continue
		}
		fi, err := de.Info()
		if err != nil || now.Sub(fi.ModTime()) < orphanAge {
			continue
		}
		if p := l.path(n); p != "" && !fileHeld(p) {
			out = append(out, p)
		}
	}
	return out
}

// Close releases what this Locker holds for its process: session grants
// and waiting tickets are deleted and their lock files closed. Leases
// granted without Session stay until released or expired. Close does not
// close the store. The Locker must not be used afterwards, and no Acquire
// may be running.
func (l *Locker) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	files := l.files
	l.files = nil
	l.mu.Unlock()
	if len(files) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	err := l.st.Update(ctx, func(tx *sql.Tx) error {
		for id := range files {
			if _, err := tx.ExecContext(ctx, "DELETE FROM lock_tickets WHERE id = ?", id); err != nil {
				return err
			}
		}
		return nil
	})
	for _, of := range files {
		closeOwn(of)
	}
	if err != nil {
		return fmt.Errorf("close lock backend: %w", err)
	}
	return nil
}

func (l *Locker) checkOpen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("lock backend is closed")
	}
	return nil
}

// createFile creates a new lock file, exclusively flocked.
func (l *Locker) createFile(name, owner string) (*ownFile, error) {
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock %q: create lock directory: %w", name, err)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	path := filepath.Join(l.dir, name+"."+hex.EncodeToString(b)+".lock")
	f, err := createLockFile(path)
	if err != nil {
		return nil, fmt.Errorf("lock %q: create lock file: %w", name, err)
	}
	return &ownFile{f: f, path: path, name: name, owner: owner}, nil
}

// keep records the lock file of ticket id.
func (l *Locker) keep(id int64, of *ownFile) {
	if of == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		closeOwn(of)
		return
	}
	l.files[id] = of
}

func (l *Locker) owns(id int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.files[id]
	return ok
}

// discard closes and removes a lock file no ticket uses.
func (l *Locker) discard(of *ownFile) {
	if of != nil {
		closeOwn(of)
	}
}

// dropFile closes and removes the lock file of ticket id, if this Locker
// has it.
func (l *Locker) dropFile(id int64) {
	l.mu.Lock()
	of := l.files[id]
	delete(l.files, id)
	l.mu.Unlock()
	l.discard(of)
}

// dropOwnerFiles closes this Locker's lock files for owner's tickets on
// lock name, except those of the tickets in keep.
func (l *Locker) dropOwnerFiles(name, owner string, keep map[int64]bool) {
	var drop []*ownFile
	l.mu.Lock()
	for id, of := range l.files {
		if of.name == name && of.owner == owner && !keep[id] {
			drop = append(drop, of)
			delete(l.files, id)
		}
	}
	l.mu.Unlock()
	for _, of := range drop {
		closeOwn(of)
	}
}

// closeOwn removes the file, then closes it, unlocking it: a waiter
// watching it wakes and finds the ticket gone.
func closeOwn(of *ownFile) {
	_ = os.Remove(of.path)
	_ = of.f.Close()
}

// removeFiles removes the lock files of deleted tickets. This Locker's own
// files are left to dropFile: they are still open.
func (l *Locker) removeFiles(ts []ticket) {
	for _, t := range ts {
		if t.file == "" || l.owns(t.id) {
			continue
		}
		if p := l.path(t.file); p != "" {
			_ = os.Remove(p)
		}
	}
}

// watch returns a channel closed when nobody holds the lock file at path
// any more, or nil when the file cannot be watched (the caller then polls).
func (l *Locker) watch(path string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w, ok := l.watchers[path]; ok {
		return w.done
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		done := make(chan struct{})
		close(done) // gone: look again at once
		return done
	}
	if err != nil {
		return nil
	}
	w := &watcher{done: make(chan struct{})}
	l.watchers[path] = w
	go func() {
		waitUnlocked(f)
		f.Close()
		l.mu.Lock()
		delete(l.watchers, path)
		l.mu.Unlock()
		close(w.done)
	}()
	return w.done
}

// The bell of a lock is a file (locks/<name>.bell) whose modification time
// Release and Cleanup set to the current time after they free a grant. A
// waiter behind a lease that no process holds (no lock file to block on)
// watches it: with inotify on Linux, elsewhere with one stat per bellPoll,
// far cheaper than a look at the queue (which takes the database's write
// lock).

func (l *Locker) bellPath(name string) string {
	return filepath.Join(l.dir, name+bellSuffix)
}

const bellSuffix = ".bell"

// ring rings the bell of lock name. It is best effort: a waiter that misses
// it looks again within recheck.
func (l *Locker) ring(name string) {
	fsutil.Ring(l.bellPath(name))
}

// SessionFile returns the open lock file of a session grant held by this
// Locker (nil otherwise). `lock run` hands it to the command it runs, so the
// flock that proves the holder alive is shared with the command, as flock(1)
// does: if netops itself is killed, the lock stays held until the command
// exits (or the lease expires), instead of being freed under a running command.
func (l *Locker) SessionFile(ls *lock.Lease) *os.File {
	l.mu.Lock()
	defer l.mu.Unlock()
	if of, ok := l.files[int64(ls.Token)]; ok {
		return of.f
	}
	return nil
}
