package local

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/netops-dev/netops/internal/lock"
)

// Ticket states.
const (
	stateWaiting = "waiting"
	stateHeld    = "held"
)

// ticket is one row of lock_tickets: a holder or a waiter of one lock.
type ticket struct {
	id      int64 // FIFO order and fencing token
	name    string
	mode    lock.Mode
	slots   int // semaphore size for shared tickets (0: no limit)
	owner   string
	host    string
	pid     int
	command string
	session bool   // the grant is tied to the owner's process (flock on file)
	file    string // lock file name in the locks directory ("" when none)
	state   string // stateWaiting or stateHeld
	ttl     int64  // ns
	created int64  // unix ns
	granted int64  // unix ns, 0 while waiting
	expires int64  // unix ns, 0 while waiting
}

func (t *ticket) held() bool { return t.state == stateHeld }

func (t *ticket) lease() *lock.Lease {
	return &lock.Lease{
		Name:     t.name,
		Mode:     t.mode,
		Slots:    t.slots,
		Owner:    t.owner,
		Token:    uint64(t.id),
		Acquired: time.Unix(0, t.granted),
		Expires:  time.Unix(0, t.expires),
		TTL:      time.Duration(t.ttl),
	}
}

func (t *ticket) entry() lock.Entry {
	e := lock.Entry{
		Lock:   t.name,
		Holder: lock.Holder{Owner: t.owner, Host: t.host, PID: t.pid, Command: t.command},
		Mode:   t.mode,
		Slots:  t.slots,
		Since:  time.Unix(0, t.created),
	}
	if t.held() {
		e.Token = uint64(t.id)
		e.Since = time.Unix(0, t.granted)
		e.Expires = time.Unix(0, t.expires)
	}
	return e
}

// claim is what the grant rule needs of a ticket.
type claim struct {
	mode  lock.Mode
	slots int // semaphore size of a shared ticket; 0: no limit
}

// grantable is the grant rule. cs are the claims of the live tickets of one
// lock, oldest (lowest id) first; grantable returns how many tickets at the
// head of that queue may hold the lock together: an exclusive ticket only
// when it is first, a shared ticket only when every ticket before it is
// shared, and a semaphore ticket of N slots only when fewer than N tickets
// are before it. The granted tickets are therefore always a prefix of the
// queue, which makes grants happen in ticket order.
func grantable(cs []claim) int {
	for i, c := range cs {
		if c.mode != lock.Shared {
			if i == 0 {
				return 1
			}
			return i
		}
		if c.slots > 0 && i >= c.slots {
			return i
		}
	}
	return len(cs)
}

const ticketCols = `id, name, mode, slots, owner, host, pid, command, session, file, state,
	ttl_ns, created_ns, COALESCE(granted_ns, 0), COALESCE(expires_ns, 0)`

// queryTickets returns the tickets selected by where (a WHERE and ORDER BY
// clause with args).
func queryTickets(ctx context.Context, tx querier, where string, args ...any) ([]ticket, error) {
	rows, err := tx.QueryContext(ctx, "SELECT "+ticketCols+" FROM lock_tickets "+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ts []ticket
	for rows.Next() {
		var t ticket
		var mode string
		if err := rows.Scan(&t.id, &t.name, &mode, &t.slots, &t.owner, &t.host, &t.pid, &t.command, &t.session,
			&t.file, &t.state, &t.ttl, &t.created, &t.granted, &t.expires); err != nil {
			return nil, err
		}
		t.mode = lock.Mode(mode)
		ts = append(ts, t)
	}
	return ts, rows.Err()
}

// querier is a transaction, or a pool for a read outside of one.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// insertTicket adds t (its id is set from the new row).
func insertTicket(ctx context.Context, tx *sql.Tx, t *ticket) error {
	var granted, expires any
	if t.held() {
		granted, expires = t.granted, t.expires
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO lock_tickets
		(name, mode, slots, owner, host, pid, command, session, file, state, ttl_ns, created_ns, granted_ns, expires_ns)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.name, string(t.mode), t.slots, t.owner, t.host, t.pid, t.command, t.session, t.file, t.state,
		t.ttl, t.created, granted, expires)
	if err != nil {
		return err
	}
	t.id, err = res.LastInsertId()
	return err
}

func deleteTickets(ctx context.Context, tx *sql.Tx, ts []ticket) error {
	for _, t := range ts {
		if _, err := tx.ExecContext(ctx, "DELETE FROM lock_tickets WHERE id = ?", t.id); err != nil {
			return err
		}
	}
	return nil
}

// alive reports whether t still counts: a lease not expired, and, for a
// session grant or a waiter, a process still holding the ticket's lock file.
func (l *Locker) alive(t *ticket, now int64) bool {
	if t.held() && t.session && t.file != "" {
		// A session grant lives exactly as long as its flock, like flock(1):
		// `lock run` shares the file with its command, so a killed netops
		// does not free the lock under a command that still runs, and no
		// lease expiry frees it under a live holder.
		return l.owns(t.id) || fileHeld(l.path(t.file))
	}
	if t.held() && t.expires < now {
		return false
	}
	if t.held() && !t.session || t.file == "" {
		return true
	}
	if l.owns(t.id) {
		return true
	}
	return fileHeld(l.path(t.file))
}

// evaluate brings the queue of one lock up to date inside tx: it deletes
// dead tickets (returned, so that their files can be removed after the
// commit) and grants the waiting tickets the grant rule allows. live is the
// queue afterwards, oldest first.
func (l *Locker) evaluate(ctx context.Context, tx *sql.Tx, name string, now int64) (live, dead []ticket, err error) {
	ts, err := queryTickets(ctx, tx, "WHERE name = ? ORDER BY id", name)
	if err != nil {
		return nil, nil, err
	}
	for i := range ts {
		if l.alive(&ts[i], now) {
			live = append(live, ts[i])
		} else {
			dead = append(dead, ts[i])
		}
	}
	if err := deleteTickets(ctx, tx, dead); err != nil {
		return nil, nil, err
	}
	n := grantable(claims(live))
	for i := range live[:n] {
		t := &live[i]
		if t.held() {
			continue
		}
		t.state, t.granted, t.expires = stateHeld, now, now+t.ttl
		if _, err := tx.ExecContext(ctx,
			"UPDATE lock_tickets SET state = ?, granted_ns = ?, expires_ns = ? WHERE id = ?",
			t.state, t.granted, t.expires, t.id); err != nil {
			return nil, nil, err
		}
	}
	return live, dead, nil
}

func claims(ts []ticket) []claim {
	cs := make([]claim, len(ts), len(ts)+1)
	for i, t := range ts {
		cs[i] = claim{t.mode, t.slots}
	}
	return cs
}

// path returns the path of a lock file named in a ticket, or "" for a name
// that is not a plain file name (a damaged row must not point netops at
// another file).
func (l *Locker) path(file string) string {
	if file == "" || strings.HasPrefix(file, ".") || filepath.Base(file) != file || strings.ContainsRune(file, filepath.Separator) {
		return ""
	}
	return filepath.Join(l.dir, file)
}

// describe lists the owners of tickets for error messages.
func describe(ts []ticket) string {
	if len(ts) == 0 {
		return "nobody"
	}
	parts := make([]string, 0, len(ts))
	for _, t := range ts {
		p := fmt.Sprintf("%q", t.owner)
		switch {
		case t.pid != 0 && t.host != "":
			p += fmt.Sprintf(" (pid %d on %s)", t.pid, t.host)
		case t.pid != 0:
			p += fmt.Sprintf(" (pid %d)", t.pid)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// describeQueue says who holds a lock and how many others wait, for
// timeout messages; ticket self (a waiter giving up) is not counted.
func describeQueue(live []ticket, self int64) string {
	waiting := 0
	for _, t := range live {
		if !t.held() && t.id != self {
			waiting++
		}
	}
	d := "held by " + describe(heldOnly(live))
	switch waiting {
	case 0:
	case 1:
		d += " (1 other request waiting)"
	default:
		d += fmt.Sprintf(" (%d other requests waiting)", waiting)
	}
	return d
}

func heldOnly(ts []ticket) []ticket {
	var h []ticket
	for _, t := range ts {
		if t.held() {
			h = append(h, t)
		}
	}
	return h
}
