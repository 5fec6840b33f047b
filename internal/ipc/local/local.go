// Package local is the ipc backend for one host: queues and channels in the
// netops SQLite state database (tables ipc_queues, ipc_messages,
// ipc_channels, ipc_channel_messages, ipc_subscribers, ipc_seq; schema
// versions 3 and 5).
// Any number of netops processes on the host may use it at once; there is
// no daemon.
//
// # Queues
//
// A message is a row of ipc_messages, a WITHOUT ROWID table whose key is
// the delivery order (qid, dead, priority DESC, id): a send, a receive and
// an ack each touch one b-tree. Its id (from ipc_seq, never reused) is its
// Seq: the FIFO order. Receive picks, in one BEGIN IMMEDIATE transaction,
// the live rows of the queue in key order whose visible_ns has passed, and
// marks them in flight: deliveries+1, a random receipt, visible_ns = now +
// the visibility timeout. Ack deletes
// the row if its receipt is still the one delivered (else ErrLost: the
// message was delivered again or dropped), Nack clears the receipt and
// sets visible_ns to now + delay, or marks the row dead when its deliveries
// reached the queue's max_deliveries. A row whose visibility passed with
// deliveries at the maximum is marked dead by the next Receive.
// AckAndReceive (ipc.AckReceiver, what `ipc recv` uses between batches)
// runs the acknowledgement of one batch and the receive of the next in one
// transaction.
//
// The size bound is enforced in the send transaction: ipc_queues.depth
// counts the live rows (kept exact by every transaction that adds or
// removes one), so a send knows at once whether it fits; drop-oldest
// deletes the rows with the smallest ids.
//
// Sends and acknowledgements are committed before they return: durable
// against a crash of any process. (The store runs WAL with
// synchronous=NORMAL: a power loss may undo the last transactions.)
//
// # Waiting
//
// A receiver or subscriber with nothing to read does not poll the
// database. It sleeps until the first of: the bell file of its queue or
// channel (ipc/q-NAME.bell, ipc/c-NAME.bell in the state directory, rung
// by every send, publish, nack and redrive through its modification time)
// changes — inotify on Linux, one stat every 20 ms elsewhere; the earliest
// moment a message of the queue becomes visible again (visibility timeout,
// retry delay); a safety re-check every second; its wait or ctx ending.
package local

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/netops-dev/netops/internal/fsutil"
	"github.com/netops-dev/netops/internal/ipc"
	"github.com/netops-dev/netops/internal/store"
)

// BellDir is the directory of bell files inside the state directory.
const BellDir = "ipc"

const (
	// recheck bounds every wait: a safety net for a missed ring.
	recheck = time.Second
	// bellPoll is how often a waiter stats its bell where inotify is not
	// available.
	bellPoll = 20 * time.Millisecond
	// cleanupTimeout bounds settling deliveries after ctx ended.
	cleanupTimeout = 10 * time.Second
)

// Backend is the local ipc backend. It is safe for concurrent use; other
// processes may use the same state directory at the same time.
type Backend struct {
	st  *store.Store
	dir string // bell files

	// stmts holds the statements of send, receive and ack, prepared once
	// on the store's write pool and reused by their transactions: parsing
	// them costs about 5-10% of those operations.
	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt
	// uniformInsert is insertSQL(insertRows, true): the INSERT of a full
	// uniform chunk (see insertRowsAt).
	uniformInsert string
}

var _ ipc.Backend = (*Backend)(nil)

// New returns a Backend keeping its state in st and bell files in
// dir/BellDir; dir is the state directory st lives in. The Backend does not
// own st: close st after the Backend.
func New(st *store.Store, dir string) *Backend {
	return &Backend{st: st, dir: filepath.Join(dir, BellDir), uniformInsert: insertSQL(insertRows, true)}
}

// Close implements ipc.Backend. It does not close the store.
func (b *Backend) Close() error {
	b.stmtMu.Lock()
	defer b.stmtMu.Unlock()
	for _, st := range b.stmts {
		st.Close()
	}
	b.stmts = nil
	return nil
}

// prepare prepares the queries not prepared yet, outside any transaction
// (inside one the write pool's connection is taken). One that fails is
// left out: the transaction then prepares it and reports the error.
func (b *Backend) prepare(ctx context.Context, queries ...string) {
	b.stmtMu.Lock()
	defer b.stmtMu.Unlock()
	for _, q := range queries {
		if b.stmts[q] != nil {
			continue
		}
		st, err := b.st.DB().PrepareContext(ctx, q)
		if err != nil {
			continue
		}
		if b.stmts == nil {
			b.stmts = map[string]*sql.Stmt{}
		}
		b.stmts[q] = st
	}
}

// stmt returns query prepared for tx: reused as it is when it was prepared
// on tx's connection (the usual case: the write pool keeps one), else
// prepared on it once more. It returns nil when query was not prepared.
func (b *Backend) stmt(ctx context.Context, tx *sql.Tx, query string) *sql.Stmt {
	b.stmtMu.Lock()
	st := b.stmts[query]
	b.stmtMu.Unlock()
	if st == nil {
		return nil
	}
	return tx.StmtContext(ctx, st)
}

func (b *Backend) exec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if st := b.stmt(ctx, tx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

func (b *Backend) query(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	if st := b.stmt(ctx, tx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return tx.QueryContext(ctx, query, args...)
}

func (b *Backend) queryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	if st := b.stmt(ctx, tx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, query, args...)
}

// dbError wraps an error from the state database for op. When ctx is done
// the failure is its doing, so the error names ctx's error and matches it.
func dbError(ctx context.Context, op string, err error) error {
	for _, e := range []error{ipc.ErrInvalid, ipc.ErrNotFound, ipc.ErrExists, ipc.ErrFull, ipc.ErrTooLarge, ipc.ErrLost} {
		if errors.Is(err, e) {
			return err
		}
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%s: %w", op, cerr)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// notFoundError reads as its message alone and matches ipc.ErrNotFound.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }
func (e *notFoundError) Unwrap() error { return ipc.ErrNotFound }

func notFound(what, name string) error {
	return &notFoundError{fmt.Sprintf("unknown %s %q: create it with 'netops ipc queue create %s' or declare it in the config file", what, name, name)}
}

// queueRow is a row of ipc_queues.
type queueRow struct {
	id  int64
	cfg ipc.QueueConfig
	created,
	depth int64
	sent, acked, dropped uint64
}

const getQueueSQL = `SELECT id, max_size, overflow, max_deliveries, visibility_ns, created_ns, depth, sent, acked, dropped
		FROM ipc_queues WHERE name = ?`

func getQueue(ctx context.Context, tx *sql.Tx, name string) (queueRow, error) {
	return scanQueue(tx.QueryRowContext(ctx, getQueueSQL, name), name)
}

// getQueue is getQueue with the prepared statement.
func (b *Backend) getQueue(ctx context.Context, tx *sql.Tx, name string) (queueRow, error) {
	return scanQueue(b.queryRow(ctx, tx, getQueueSQL, name), name)
}

func scanQueue(row *sql.Row, name string) (queueRow, error) {
	var q queueRow
	var overflow string
	var vis int64
	err := row.Scan(&q.id, &q.cfg.MaxSize, &overflow, &q.cfg.MaxDeliveries, &vis, &q.created, &q.depth, &q.sent, &q.acked, &q.dropped)
	if errors.Is(err, sql.ErrNoRows) {
		return q, notFound("queue", name)
	}
	if err != nil {
		return q, err
	}
	q.cfg.Name = name
	q.cfg.Overflow = ipc.Overflow(overflow)
	q.cfg.Visibility = time.Duration(vis)
	return q, nil
}

func checkQueueConfig(cfg ipc.QueueConfig) (ipc.QueueConfig, error) {
	cfg = cfg.WithDefaults()
	return cfg, cfg.Validate()
}

// CreateQueue implements ipc.Backend.
func (b *Backend) CreateQueue(ctx context.Context, cfg ipc.QueueConfig) error {
	cfg, err := checkQueueConfig(cfg)
	if err != nil {
		return err
	}
	err = b.st.Update(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM ipc_queues WHERE name = ?`, cfg.Name).Scan(&one)
		if err == nil {
			return fmt.Errorf("%w: queue %q (see 'netops ipc queue list')", ipc.ErrExists, cfg.Name)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO ipc_queues (name, max_size, overflow, max_deliveries, visibility_ns, created_ns)
			VALUES (?, ?, ?, ?, ?, ?)`, cfg.Name, cfg.MaxSize, string(cfg.Overflow), cfg.MaxDeliveries, int64(cfg.Visibility), time.Now().UnixNano())
		return err
	})
	if err != nil {
		return dbError(ctx, "create queue "+cfg.Name, err)
	}
	return nil
}

// EnsureQueue implements ipc.Backend.
func (b *Backend) EnsureQueue(ctx context.Context, cfg ipc.QueueConfig) error {
	cfg, err := checkQueueConfig(cfg)
	if err != nil {
		return err
	}
	// A read first: the common case (the queue exists as configured)
	// takes no write lock.
	same := false
	err = b.st.View(ctx, func(tx *sql.Tx) error {
		q, err := getQueue(ctx, tx, cfg.Name)
		if err == nil {
			same = q.cfg == cfg
			return nil
		}
		if errors.Is(err, ipc.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return dbError(ctx, "queue "+cfg.Name, err)
	}
	if same {
		return nil
	}
	err = b.st.Update(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO ipc_queues (name, max_size, overflow, max_deliveries, visibility_ns, created_ns)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET max_size = excluded.max_size, overflow = excluded.overflow,
				max_deliveries = excluded.max_deliveries, visibility_ns = excluded.visibility_ns`,
			cfg.Name, cfg.MaxSize, string(cfg.Overflow), cfg.MaxDeliveries, int64(cfg.Visibility), time.Now().UnixNano())
		return err
	})
	if err != nil {
		return dbError(ctx, "queue "+cfg.Name, err)
	}
	return nil
}

// DeleteQueue implements ipc.Backend.
func (b *Backend) DeleteQueue(ctx context.Context, name string) error {
	if err := ipc.ValidateName("queue", name); err != nil {
		return err
	}
	err := b.st.Update(ctx, func(tx *sql.Tx) error {
		q, err := getQueue(ctx, tx, name)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM ipc_messages WHERE qid = ?`, q.id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM ipc_queues WHERE id = ?`, q.id)
		return err
	})
	if err != nil {
		return dbError(ctx, "delete queue "+name, err)
	}
	b.ring("q", name) // receivers waiting on it see it gone
	return nil
}

// PurgeQueue implements ipc.Backend.
func (b *Backend) PurgeQueue(ctx context.Context, name string) (int, error) {
	if err := ipc.ValidateName("queue", name); err != nil {
		return 0, err
	}
	var n int64
	err := b.st.Update(ctx, func(tx *sql.Tx) error {
		q, err := getQueue(ctx, tx, name)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM ipc_messages WHERE qid = ? AND dead = 0`, q.id)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE ipc_queues SET depth = 0 WHERE id = ?`, q.id)
		return err
	})
	if err != nil {
		return 0, dbError(ctx, "purge queue "+name, err)
	}
	return int(n), nil
}

// Queues implements ipc.Backend.
func (b *Backend) Queues(ctx context.Context) ([]ipc.QueueConfig, error) {
	var out []ipc.QueueConfig
	err := b.st.View(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, `SELECT name, max_size, overflow, max_deliveries, visibility_ns FROM ipc_queues ORDER BY name`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c ipc.QueueConfig
			var overflow string
			var vis int64
			if err := rows.Scan(&c.Name, &c.MaxSize, &overflow, &c.MaxDeliveries, &vis); err != nil {
				return err
			}
			c.Overflow, c.Visibility = ipc.Overflow(overflow), time.Duration(vis)
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, dbError(ctx, "list queues", err)
	}
	return out, nil
}

// QueueStats implements ipc.Backend.
func (b *Backend) QueueStats(ctx context.Context, name string) (ipc.QueueStats, error) {
	if err := ipc.ValidateName("queue", name); err != nil {
		return ipc.QueueStats{}, err
	}
	var s ipc.QueueStats
	err := b.st.View(ctx, func(tx *sql.Tx) error {
		q, err := getQueue(ctx, tx, name)
		if err != nil {
			return err
		}
		now := time.Now().UnixNano()
		s = ipc.QueueStats{QueueConfig: q.cfg, Created: time.Unix(0, q.created), ByPriority: map[ipc.Priority]int{},
			Sent: q.sent, Acked: q.acked, Dropped: q.dropped}
		for _, p := range ipc.Priorities() {
			s.ByPriority[p] = 0
		}
		rows, err := tx.QueryContext(ctx, `SELECT priority, receipt != 0 AND visible_ns > ?, count(*), min(sent_ns)
			FROM ipc_messages WHERE qid = ? AND dead = 0 GROUP BY 1, 2`, now, q.id)
		if err != nil {
			return err
		}
		defer rows.Close()
		var oldest int64
		for rows.Next() {
			var prio, n int
			var inflight bool
			var minSent int64
			if err := rows.Scan(&prio, &inflight, &n, &minSent); err != nil {
				return err
			}
			if inflight {
				s.InFlight += n
			} else {
				s.Ready += n
				s.ByPriority[ipc.PriorityOfRank(prio)] += n
			}
			if oldest == 0 || minSent < oldest {
				oldest = minSent
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if oldest != 0 {
			s.Oldest = time.Unix(0, oldest)
		}
		return tx.QueryRowContext(ctx, `SELECT count(*) FROM ipc_messages WHERE qid = ? AND dead = 1`, q.id).Scan(&s.Dead)
	})
	if err != nil {
		return ipc.QueueStats{}, dbError(ctx, "queue "+name, err)
	}
	return s, nil
}

func encodeHeaders(h map[string]string) (any, error) {
	if len(h) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

func decodeHeaders(s sql.NullString) map[string]string {
	if !s.Valid || s.String == "" {
		return nil
	}
	var h map[string]string
	if json.Unmarshal([]byte(s.String), &h) != nil {
		return map[string]string{"_corrupt_headers": s.String}
	}
	return h
}

// decodeRawHeaders is decodeHeaders for a column read as sql.RawBytes.
func decodeRawHeaders(b sql.RawBytes) map[string]string {
	if len(b) == 0 {
		return nil
	}
	var h map[string]string
	if json.Unmarshal(b, &h) != nil {
		return map[string]string{"_corrupt_headers": string(b)}
	}
	return h
}

func validateAll(msgs []ipc.Outgoing) error {
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

func rank(p ipc.Priority) int {
	if p == "" {
		return ipc.Normal.Rank()
	}
	return p.Rank()
}

// Send implements ipc.Backend.
func (b *Backend) Send(ctx context.Context, queue string, msgs []ipc.Outgoing) (ipc.SendResult, error) {
	if err := ipc.ValidateName("queue", queue); err != nil {
		return ipc.SendResult{}, err
	}
	if err := validateAll(msgs); err != nil {
		return ipc.SendResult{}, err
	}
	b.prepare(ctx, getQueueSQL, reserveSQL, sentSQL, b.uniformInsert)
	var res ipc.SendResult
	var full error
	err := b.st.Update(ctx, func(tx *sql.Tx) error {
		res, full = ipc.SendResult{}, nil
		q, err := b.getQueue(ctx, tx, queue)
		if err != nil {
			return err
		}
		n := len(msgs)
		if q.cfg.Overflow == ipc.Reject && q.depth+int64(n) > int64(q.cfg.MaxSize) {
			n = max(int(int64(q.cfg.MaxSize)-q.depth), 0)
			full = fmt.Errorf("%w: queue %q holds %d messages, its maximum (overflow policy reject); %d of %d messages sent",
				ipc.ErrFull, queue, q.cfg.MaxSize, n, len(msgs))
		}
		if n == 0 {
			return nil
		}
		now := time.Now()
		stored, err := b.insertRowsAt(ctx, tx, q.id, msgs[:n], now.UnixNano(), nil)
		if err != nil {
			return err
		}
		// One allocation for the messages and one for their IDs, rather
		// than growing the slice and formatting a string per message.
		res.Messages = make([]ipc.Message, len(stored))
		ids := make([]byte, 0, 8*len(stored))
		for _, id := range stored {
			ids = strconv.AppendInt(ids, id, 10)
		}
		idStr, start := string(ids), 0
		for i, id := range stored {
			m := msgs[i]
			end := start + decimalLen(id)
			res.Messages[i] = ipc.Message{ID: idStr[start:end], Seq: uint64(id), Queue: queue,
				Priority: ipc.PriorityOfRank(rank(m.Priority)), Sender: m.Sender, Headers: m.Headers, Time: now}
			start = end
		}
		dropped, err := bound(ctx, tx, q, int64(n))
		if err != nil {
			return err
		}
		res.Dropped = int(dropped)
		_, err = b.exec(ctx, tx, sentSQL, n, dropped, n, dropped, q.id)
		return err
	})
	if err != nil {
		return ipc.SendResult{}, dbError(ctx, "send to queue "+queue, err)
	}
	if len(res.Messages) > 0 {
		b.ring("q", queue)
	}
	return res, full
}

// decimalLen is the number of digits of n >= 0.
func decimalLen(n int64) int {
	d := 1
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}

// insertRows is how many rows one INSERT statement carries: multi-row
// statements save most of the per-statement cost of the driver.
const insertRows = 100

// Statements of Send.
const (
	reserveSQL = `UPDATE ipc_seq SET last = last + ? RETURNING last`
	sentSQL    = `UPDATE ipc_queues SET depth = depth + ? - ?, sent = sent + ?, dropped = dropped + ? WHERE id = ?`
)

// reserveIDs takes n message ids from ipc_seq and returns the first.
func (b *Backend) reserveIDs(ctx context.Context, tx *sql.Tx, n int) (int64, error) {
	var last int64
	if err := b.queryRow(ctx, tx, reserveSQL, n).Scan(&last); err != nil {
		return 0, err
	}
	return last - int64(n) + 1, nil
}

// insertSQL is the INSERT of rows messages into ipc_messages; uniform: see
// insertRowsAt.
func insertSQL(rows int, uniform bool) string {
	var b strings.Builder
	b.WriteString("INSERT INTO ipc_messages (qid, dead, priority, id, sent_ns, sender, headers, body) VALUES ")
	for j := range rows {
		if j > 0 {
			b.WriteByte(',')
		}
		if uniform {
			// ?1 qid, ?2 priority, ?3 first id, ?4 sent, ?5 sender.
			fmt.Fprintf(&b, "(?1, 0, ?2, ?3 + %d, ?4, ?5, NULL, ?%d)", j, 6+j)
		} else {
			k := 1 + 7*j
			fmt.Fprintf(&b, "(?%d, 0, ?%d, ?%d, ?%d, ?%d, ?%d, ?%d)", k, k+1, k+2, k+3, k+4, k+5, k+6)
		}
	}
	return b.String()
}

// insertRowsAt inserts msgs into queue qid with new ids (consecutive, from
// ipc_seq) and returns them; sentNs gives each message's send time when not
// nil (redrive), else all get ns.
func (b *Backend) insertRowsAt(ctx context.Context, tx *sql.Tx, qid int64, msgs []ipc.Outgoing, ns int64, sentNs []int64) ([]int64, error) {
	first, err := b.reserveIDs(ctx, tx, len(msgs))
	if err != nil {
		return nil, err
	}
	ids := make([]int64, 0, len(msgs))
	type stmtKey struct {
		rows    int
		uniform bool
	}
	stmts := map[stmtKey]*sql.Stmt{}
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	args := make([]any, 0, 7*insertRows)
	for i := 0; i < len(msgs); i += insertRows {
		chunk := msgs[i:min(i+insertRows, len(msgs))]
		// A uniform chunk (one priority and sender, no headers, one send
		// time: `send --lines`) binds those once and only the bodies per
		// row: binding dominates the cost of small messages.
		uniform := sentNs == nil
		for _, m := range chunk {
			if rank(m.Priority) != rank(chunk[0].Priority) || m.Sender != chunk[0].Sender || len(m.Headers) > 0 {
				uniform = false
				break
			}
		}
		key := stmtKey{len(chunk), uniform}
		stmt := stmts[key]
		if stmt == nil && key == (stmtKey{insertRows, true}) {
			if stmt = b.stmt(ctx, tx, b.uniformInsert); stmt != nil {
				stmts[key] = stmt
			}
		}
		if stmt == nil {
			var err error
			if stmt, err = tx.PrepareContext(ctx, insertSQL(len(chunk), uniform)); err != nil {
				return nil, err
			}
			stmts[key] = stmt
		}
		args = args[:0]
		if uniform {
			args = append(args, qid, rank(chunk[0].Priority), first+int64(len(ids)), ns, chunk[0].Sender)
		}
		for j, m := range chunk {
			body := m.Body
			if body == nil {
				body = []byte{}
			}
			id := first + int64(len(ids))
			ids = append(ids, id)
			if uniform {
				args = append(args, body)
				continue
			}
			h, err := encodeHeaders(m.Headers)
			if err != nil {
				return nil, err
			}
			sent := ns
			if sentNs != nil {
				sent = sentNs[i+j]
			}
			args = append(args, qid, rank(m.Priority), id, sent, m.Sender, h, body)
		}
		if _, err := stmt.ExecContext(ctx, args...); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// bound applies drop-oldest after added rows were inserted into q (whose
// depth is q.depth before them): it deletes the oldest live rows beyond
// max_size and returns how many. The caller updates depth.
func bound(ctx context.Context, tx *sql.Tx, q queueRow, added int64) (int64, error) {
	excess := q.depth + added - int64(q.cfg.MaxSize)
	if excess <= 0 || q.cfg.Overflow != ipc.DropOldest {
		return 0, nil
	}
	// The excess smallest ids: the first excess of each priority (key
	// order), merged; then each priority loses a prefix.
	type key struct {
		prio int
		id   int64
	}
	var keys []key
	for _, p := range ipc.Priorities() {
		rows, err := tx.QueryContext(ctx, `SELECT id FROM ipc_messages WHERE qid = ? AND dead = 0 AND priority = ? ORDER BY id LIMIT ?`,
			q.id, p.Rank(), excess)
		if err != nil {
			return 0, err
		}
		for rows.Next() {
			k := key{prio: p.Rank()}
			if err := rows.Scan(&k.id); err != nil {
				rows.Close()
				return 0, err
			}
			keys = append(keys, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, err
		}
	}
	slices.SortFunc(keys, func(a, b key) int { return cmp.Compare(a.id, b.id) })
	keys = keys[:min(int64(len(keys)), excess)]
	cutoff := map[int]int64{}
	for _, k := range keys {
		cutoff[k.prio] = max(cutoff[k.prio], k.id)
	}
	for prio, upTo := range cutoff {
		if _, err := tx.ExecContext(ctx, `DELETE FROM ipc_messages WHERE qid = ? AND dead = 0 AND priority = ? AND id <= ?`, q.id, prio, upTo); err != nil {
			return 0, err
		}
	}
	return int64(len(keys)), nil
}

// delivery is a local ipc.Delivery.
type delivery struct {
	b       *Backend
	msg     ipc.Message
	qid     int64
	receipt int64
	maxDel  int
	vis     time.Duration
}

func (d *delivery) Message() *ipc.Message { return &d.msg }

func (d *delivery) lost() error {
	return fmt.Errorf("%w: message %s of queue %q was delivered again or dropped after its visibility timeout (%s)",
		ipc.ErrLost, d.msg.ID, d.msg.Queue, d.vis)
}

// Ack implements ipc.Delivery.
func (d *delivery) Ack(ctx context.Context) error {
	return d.b.AckAll(ctx, []ipc.Delivery{d})
}

// Nack implements ipc.Delivery.
func (d *delivery) Nack(ctx context.Context, delay time.Duration, reason string) (bool, error) {
	dead := d.msg.Deliveries >= d.maxDel
	if delay < 0 {
		delay = 0
	}
	if dead {
		if reason == "" {
			reason = "nacked"
		}
		reason = fmt.Sprintf("%s (after %d deliveries)", reason, d.msg.Deliveries)
	}
	err := d.b.st.Update(ctx, func(tx *sql.Tx) error {
		var res sql.Result
		var err error
		if dead {
			res, err = tx.ExecContext(ctx, `UPDATE ipc_messages SET dead = 1, receipt = 0, visible_ns = 0, reason = ?
				WHERE qid = ? AND dead = 0 AND priority = ? AND id = ? AND receipt = ?`, reason, d.qid, d.msg.Priority.Rank(), d.msg.Seq, d.receipt)
		} else {
			res, err = tx.ExecContext(ctx, `UPDATE ipc_messages SET receipt = 0, visible_ns = ?, reason = ?
				WHERE qid = ? AND dead = 0 AND priority = ? AND id = ? AND receipt = ?`,
				time.Now().Add(delay).UnixNano(), nullString(reason), d.qid, d.msg.Priority.Rank(), d.msg.Seq, d.receipt)
		}
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err != nil {
				return err
			}
			return d.lost()
		}
		if dead {
			_, err = tx.ExecContext(ctx, `UPDATE ipc_queues SET depth = depth - 1 WHERE id = ?`, d.qid)
		}
		return err
	})
	if err != nil {
		return false, dbError(ctx, "nack message "+d.msg.ID+" of queue "+d.msg.Queue, err)
	}
	d.b.ring("q", d.msg.Queue)
	return dead, nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Extend implements ipc.Delivery.
func (d *delivery) Extend(ctx context.Context) error {
	err := d.b.st.Update(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE ipc_messages SET visible_ns = ? WHERE qid = ? AND dead = 0 AND priority = ? AND id = ? AND receipt = ?`,
			time.Now().Add(d.vis).UnixNano(), d.qid, d.msg.Priority.Rank(), d.msg.Seq, d.receipt)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err != nil {
				return err
			}
			return d.lost()
		}
		return nil
	})
	if err != nil {
		return dbError(ctx, "extend message "+d.msg.ID+" of queue "+d.msg.Queue, err)
	}
	return nil
}

// Statements of AckAll.
const (
	ackDeleteSQL = `DELETE FROM ipc_messages WHERE qid = ? AND dead = 0 AND priority = ?
		AND id BETWEEN ? AND ? AND receipt = ?`
	ackCountSQL = `UPDATE ipc_queues SET depth = depth - ?, acked = acked + ? WHERE id = ?`
)

// AckAll implements ipc.Backend. Deliveries that were lost are reported
// together (ErrLost); the others are acknowledged.
func (b *Backend) AckAll(ctx context.Context, ds []ipc.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	a, err := b.newAcks(ds)
	if err != nil {
		return err
	}
	b.prepare(ctx, ackDeleteSQL, ackCountSQL)
	if err := b.st.Update(ctx, func(tx *sql.Tx) error { return a.exec(ctx, tx) }); err != nil {
		return dbError(ctx, "acknowledge", err)
	}
	return a.err()
}

// acks is an acknowledgement of deliveries, run by AckAll or, in the
// transaction of the next receive, by AckAndReceive.
type acks struct {
	b     *Backend
	own   []*delivery
	order []ackKey
	// groups: one DELETE per receipt (a Receive call) and priority; the
	// rows it does not delete were delivered again or dropped meanwhile.
	groups map[ackKey]*ackGroup
	// Results of the last exec.
	lost  []string // ids of the groups that lost some
	lostN int
}

type ackKey struct {
	receipt int64
	prio    int
}

type ackGroup struct {
	qid    int64
	lo, hi int64 // id range
	n      int
	ds     []*delivery
}

func (b *Backend) newAcks(ds []ipc.Delivery) (*acks, error) {
	a := &acks{b: b, own: make([]*delivery, 0, len(ds)), groups: map[ackKey]*ackGroup{}}
	for _, d := range ds {
		ld, ok := d.(*delivery)
		if !ok || ld.b != b {
			return nil, fmt.Errorf("%w: delivery of another backend", ipc.ErrInvalid)
		}
		a.own = append(a.own, ld)
		k := ackKey{ld.receipt, ld.msg.Priority.Rank()}
		g := a.groups[k]
		seq := int64(ld.msg.Seq)
		if g == nil {
			g = &ackGroup{qid: ld.qid, lo: seq, hi: seq}
			a.groups[k] = g
			a.order = append(a.order, k)
		}
		g.lo, g.hi = min(g.lo, seq), max(g.hi, seq)
		g.n++
		g.ds = append(g.ds, ld)
	}
	return a, nil
}

// exec deletes the acknowledged rows in tx and counts them; a retried
// transaction may run it again.
func (a *acks) exec(ctx context.Context, tx *sql.Tx) error {
	a.lost, a.lostN = a.lost[:0], 0
	acked := map[int64]int{}
	for _, k := range a.order {
		g := a.groups[k]
		// The receipt is unique to one Receive: its rows in the id range
		// of the group are exactly the group (a range scan).
		res, err := a.b.exec(ctx, tx, ackDeleteSQL, g.qid, k.prio, g.lo, g.hi, k.receipt)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if int(n) < g.n {
			// Which ones is not known (they are gone); name them all when
			// few.
			a.lostN += g.n - int(n)
			for _, d := range g.ds {
				a.lost = append(a.lost, d.msg.ID)
			}
		}
		acked[g.qid] += int(n)
	}
	for qid, n := range acked {
		if n == 0 {
			continue
		}
		if _, err := a.b.exec(ctx, tx, ackCountSQL, n, n, qid); err != nil {
			return err
		}
	}
	return nil
}

// err reports the deliveries the last exec found lost.
func (a *acks) err() error {
	switch {
	case a.lostN > 0 && len(a.own) == 1:
		return a.own[0].lost()
	case a.lostN > 0 && len(a.lost) <= 10:
		return fmt.Errorf("%w: %d of %d messages (among %s) were delivered again or dropped after their visibility timeout",
			ipc.ErrLost, a.lostN, len(a.own), strings.Join(a.lost, ", "))
	case a.lostN > 0:
		return fmt.Errorf("%w: %d of %d messages were delivered again or dropped after their visibility timeout",
			ipc.ErrLost, a.lostN, len(a.own))
	}
	return nil
}

func newReceipt() int64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	r := int64(binary.LittleEndian.Uint64(b[:]) >> 1)
	if r == 0 {
		r = 1
	}
	return r
}

// Receive implements ipc.Backend.
func (b *Backend) Receive(ctx context.Context, queue string, opts ipc.ReceiveOptions) ([]ipc.Delivery, error) {
	return b.receive(ctx, queue, opts, nil)
}

// AckAndReceive implements ipc.AckReceiver: the acknowledgement and the
// first attempt to receive are one transaction.
func (b *Backend) AckAndReceive(ctx context.Context, queue string, ds []ipc.Delivery, opts ipc.ReceiveOptions) ([]ipc.Delivery, error) {
	var a *acks
	if len(ds) > 0 {
		var err error
		if a, err = b.newAcks(ds); err != nil {
			return nil, err
		}
	}
	return b.receive(ctx, queue, opts, a)
}

// receive is Receive after acknowledging a (when not nil) in the
// transaction of its first attempt.
func (b *Backend) receive(ctx context.Context, queue string, opts ipc.ReceiveOptions, a *acks) ([]ipc.Delivery, error) {
	if err := ipc.ValidateName("queue", queue); err != nil {
		return nil, err
	}
	if opts.Max <= 0 {
		opts.Max = 1
	}
	if opts.Wait < 0 && opts.Wait != ipc.WaitForever {
		return nil, fmt.Errorf("%w: negative wait", ipc.ErrInvalid)
	}
	var deadline <-chan time.Time
	if opts.Wait > 0 {
		t := time.NewTimer(opts.Wait)
		defer t.Stop()
		deadline = t.C
	}
	bell := b.bellPath("q", queue)
	var ackErr error // lost acknowledgements
	for {
		rung := fsutil.BellTime(bell)
		ds, next, err := b.tryReceive(ctx, queue, opts.Max, a)
		if err != nil {
			return nil, err
		}
		if a != nil {
			ackErr, a = a.err(), nil // done
		}
		if len(ds) > 0 || opts.Wait == 0 {
			return ds, ackErr
		}
		select {
		case <-deadline:
			return nil, ackErr
		default:
		}
		if !b.sleep(ctx, bell, rung, next, deadline) {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("receive from queue %s: %w", queue, err)
			}
			return nil, ackErr
		}
	}
}

// sleep waits for the bell at path to ring after rung, until next (unix ns,
// 0 = none), recheck, or deadline. It returns false when deadline or ctx
// ended the wait.
func (b *Backend) sleep(ctx context.Context, bell string, rung time.Time, next int64, deadline <-chan time.Time) bool {
	d := recheck
	if next > 0 {
		d = min(d, max(time.Until(time.Unix(0, next)), time.Millisecond))
	}
	_ = os.MkdirAll(b.dir, 0o700) // the watch needs the file, the file its directory
	rang, stop := fsutil.WatchBell(bell, rung)
	defer stop()
	var poll <-chan time.Time
	if rang == nil {
		tk := time.NewTicker(bellPoll)
		defer tk.Stop()
		poll = tk.C
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-deadline:
			return false
		case <-rang:
			return true
		case <-t.C:
			return true
		case <-poll:
			if !fsutil.BellTime(bell).Equal(rung) {
				return true
			}
		}
	}
}

// Statements of Receive. OR FAIL: the UPDATE cannot break a constraint, and
// without a possible ABORT SQLite keeps no statement journal for it (which
// spilled to a temporary file for every batch of 1000).
const (
	recvSelectSQL = `SELECT id, priority, deliveries, sent_ns, sender, headers, body FROM ipc_messages
		WHERE qid = ? AND dead = 0 AND visible_ns <= ? ORDER BY priority DESC, id LIMIT ?`
	recvMarkSQL = `UPDATE OR FAIL ipc_messages SET deliveries = deliveries + 1, receipt = ?, visible_ns = ?
		WHERE qid = ? AND dead = 0 AND priority = ? AND id BETWEEN ? AND ? AND visible_ns <= ?`
)

// tryReceive delivers up to max messages of queue; when there is none it
// returns the earliest time (unix ns) one becomes visible, 0 if none.
//
// One SELECT reads the first max visible rows in (priority DESC, id)
// order, one UPDATE per priority marks them. A row whose visibility passed
// after its last allowed delivery gets deliveries > max_deliveries: it is
// marked dead instead (its count restored) and not delivered.
func (b *Backend) tryReceive(ctx context.Context, queue string, maxN int, a *acks) ([]ipc.Delivery, int64, error) {
	b.prepare(ctx, getQueueSQL, recvSelectSQL, recvMarkSQL, ackDeleteSQL, ackCountSQL)
	var out []ipc.Delivery
	var next int64
	err := b.st.Update(ctx, func(tx *sql.Tx) error {
		out, next = nil, 0
		if a != nil {
			if err := a.exec(ctx, tx); err != nil {
				return err
			}
		}
		q, err := b.getQueue(ctx, tx, queue)
		if err != nil {
			return err
		}
		now := time.Now().UnixNano()
		receipt := newReceipt()
		// The first maxN visible rows in key order, read whole in one pass
		// (the row is the key's leaf). The transaction holds the write
		// lock, so they are still exactly the visible rows of their id
		// range per priority when the UPDATE below marks them.
		rows, err := b.query(ctx, tx, recvSelectSQL, q.id, now, maxN)
		if err != nil {
			return err
		}
		type span struct {
			prio   int
			lo, hi int64
		}
		var spans []span // in key order: priorities descending
		var expired []int64
		var expiredPrio []int
		bl := newBuilder(b, queue, q, receipt, maxN)
		var (
			sender, hdrs, body sql.RawBytes
			vals               [4]any
		)
		for rows.Next() {
			// Integers into any: into *int64 database/sql converts them by
			// reflection, a notable cost per row.
			if err := rows.Scan(&vals[0], &vals[1], &vals[2], &vals[3], &sender, &hdrs, &body); err != nil {
				rows.Close()
				return err
			}
			id, prio64, dels64, sent, err := ints4(vals)
			if err != nil {
				rows.Close()
				return err
			}
			prio, deliveries := int(prio64), int(dels64)
			if n := len(spans); n == 0 || spans[n-1].prio != prio {
				spans = append(spans, span{prio: prio, lo: id})
			}
			spans[len(spans)-1].hi = id
			deliveries++ // as the UPDATE below sets it
			if deliveries > q.cfg.MaxDeliveries {
				expired = append(expired, id)
				expiredPrio = append(expiredPrio, prio)
				continue
			}
			bl.add(id, prio, deliveries, sent, sender, hdrs, body)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		out = bl.finish()
		// Within a priority the picked rows are all the visible rows
		// between the first and the last picked: a range, not seeks.
		for _, sp := range spans {
			if _, err := b.exec(ctx, tx, recvMarkSQL, receipt, now+int64(q.cfg.Visibility), q.id, sp.prio, sp.lo, sp.hi, now); err != nil {
				return err
			}
		}
		if len(expired) > 0 {
			reason := fmt.Sprintf("visibility timeout (%s) passed after delivery %d of %d", q.cfg.Visibility, q.cfg.MaxDeliveries, q.cfg.MaxDeliveries)
			for i, id := range expired {
				if _, err := tx.ExecContext(ctx, `UPDATE ipc_messages SET dead = 1, receipt = 0, visible_ns = 0, deliveries = deliveries - 1, reason = ?
					WHERE qid = ? AND dead = 0 AND priority = ? AND id = ?`, reason, q.id, expiredPrio[i], id); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, `UPDATE ipc_queues SET depth = depth - ? WHERE id = ?`, len(expired), q.id); err != nil {
				return err
			}
		}
		if len(out) == 0 {
			// When to look again: the earliest retry delay or visibility
			// timeout of the queue.
			var n sql.NullInt64
			if err := tx.QueryRowContext(ctx, `SELECT min(visible_ns) FROM ipc_messages WHERE qid = ? AND dead = 0 AND visible_ns > ?`,
				q.id, now).Scan(&n); err != nil {
				return err
			}
			next = n.Int64
		}
		return nil
	})
	if err != nil {
		return nil, 0, dbError(ctx, "receive from queue "+queue, err)
	}
	return out, next, nil
}

// ints4 returns four integer column values scanned into any.
func ints4(v [4]any) (a, b, c, d int64, err error) {
	var ok [4]bool
	a, ok[0] = v[0].(int64)
	b, ok[1] = v[1].(int64)
	c, ok[2] = v[2].(int64)
	d, ok[3] = v[3].(int64)
	if ok != [4]bool{true, true, true, true} {
		return 0, 0, 0, 0, fmt.Errorf("unexpected column types %T %T %T %T", v[0], v[1], v[2], v[3])
	}
	return a, b, c, d, nil
}

// builder makes the deliveries of one receive with few allocations per
// batch rather than several per message: the deliveries share arrays, the
// bodies buffers (each body capped at its length), the ids one string, and
// equal senders one string.
type builder struct {
	b          *Backend
	queue      string
	q          queueRow
	receipt    int64
	batch      int
	out        []ipc.Delivery
	slab       []delivery
	bodies     []byte
	ids        []byte
	idAt       [][2]int // where the ID of each delivery is in ids
	lastSender string
}

func newBuilder(b *Backend, queue string, q queueRow, receipt int64, batch int) *builder {
	return &builder{b: b, queue: queue, q: q, receipt: receipt, batch: batch}
}

// add adds a delivery; the byte slices may be reused by the caller after.
func (bl *builder) add(id int64, prio, deliveries int, sent int64, sender, hdrs, body []byte) {
	if len(bl.slab) == cap(bl.slab) {
		// A new array: the deliveries handed out point into the old ones.
		bl.slab = make([]delivery, 0, min(max(bl.batch, 1), 1024))
	}
	bl.slab = append(bl.slab, delivery{b: bl.b, qid: bl.q.id, receipt: bl.receipt, maxDel: bl.q.cfg.MaxDeliveries, vis: bl.q.cfg.Visibility})
	d := &bl.slab[len(bl.slab)-1]
	bl.out = append(bl.out, d)
	if string(sender) != bl.lastSender {
		bl.lastSender = string(sender)
	}
	if bl.bodies == nil || cap(bl.bodies)-len(bl.bodies) < len(body) {
		bl.bodies = make([]byte, 0, max(64<<10, len(body)))
	}
	k := len(bl.bodies)
	bl.bodies = append(bl.bodies, body...)
	d.msg.Body = bl.bodies[k:len(bl.bodies):len(bl.bodies)]
	k = len(bl.ids)
	bl.ids = strconv.AppendInt(bl.ids, id, 10)
	bl.idAt = append(bl.idAt, [2]int{k, len(bl.ids)})
	d.msg.Seq, d.msg.Queue, d.msg.Deliveries, d.msg.Sender = uint64(id), bl.queue, deliveries, bl.lastSender
	d.msg.Priority, d.msg.Time, d.msg.Headers = ipc.PriorityOfRank(prio), time.Unix(0, sent), decodeRawHeaders(hdrs)
}

// finish returns the deliveries, their IDs set.
func (bl *builder) finish() []ipc.Delivery {
	idStr := string(bl.ids)
	for i, d := range bl.out {
		d.(*delivery).msg.ID = idStr[bl.idAt[i][0]:bl.idAt[i][1]]
	}
	return bl.out
}

func scanMessages(rows *sql.Rows, queue string) ([]ipc.Message, error) {
	defer rows.Close()
	var out []ipc.Message
	for rows.Next() {
		var m ipc.Message
		var id, sent int64
		var prio int
		var headers, reason sql.NullString
		if err := rows.Scan(&id, &prio, &m.Deliveries, &sent, &m.Sender, &headers, &m.Body, &reason); err != nil {
			return nil, err
		}
		m.ID, m.Seq, m.Queue = strconv.FormatInt(id, 10), uint64(id), queue
		m.Priority, m.Time, m.Headers, m.Reason = ipc.PriorityOfRank(prio), time.Unix(0, sent), decodeHeaders(headers), reason.String
		out = append(out, m)
	}
	return out, rows.Err()
}

// Peek implements ipc.Backend: the messages not in flight, in delivery
// order (including those waiting for a retry delay).
func (b *Backend) Peek(ctx context.Context, queue string, limit int) ([]ipc.Message, error) {
	return b.list(ctx, "peek queue", queue, limit, `SELECT id, priority, deliveries, sent_ns, sender, headers, body, reason FROM ipc_messages
		WHERE qid = ? AND dead = 0 AND (receipt = 0 OR visible_ns <= ?) ORDER BY priority DESC, id LIMIT ?`)
}

// DeadLetters implements ipc.Backend.
func (b *Backend) DeadLetters(ctx context.Context, queue string, limit int) ([]ipc.Message, error) {
	return b.list(ctx, "dead letters of queue", queue, limit, `SELECT id, priority, deliveries, sent_ns, sender, headers, body, reason FROM ipc_messages
		WHERE qid = ? AND dead = 1 AND ? > 0 ORDER BY id LIMIT ?`)
}

func (b *Backend) list(ctx context.Context, op, queue string, limit int, query string) ([]ipc.Message, error) {
	if err := ipc.ValidateName("queue", queue); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	var out []ipc.Message
	err := b.st.View(ctx, func(tx *sql.Tx) error {
		q, err := getQueue(ctx, tx, queue)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, query, q.id, time.Now().UnixNano(), limit)
		if err != nil {
			return err
		}
		out, err = scanMessages(rows, queue)
		return err
	})
	if err != nil {
		return nil, dbError(ctx, op+" "+queue, err)
	}
	return out, nil
}

// Redrive implements ipc.Backend: dead letters go back at the end of the
// queue (new Seq), keeping their send time, sender, headers and priority.
func (b *Backend) Redrive(ctx context.Context, queue string, limit int) (int, error) {
	if err := ipc.ValidateName("queue", queue); err != nil {
		return 0, err
	}
	if limit <= 0 {
		limit = -1
	}
	var n int
	var full error
	err := b.st.Update(ctx, func(tx *sql.Tx) error {
		n, full = 0, nil
		limit := limit // this attempt's (Update may retry fn)
		q, err := getQueue(ctx, tx, queue)
		if err != nil {
			return err
		}
		if q.cfg.Overflow == ipc.Reject {
			room := int(int64(q.cfg.MaxSize) - q.depth)
			if room <= 0 {
				return fmt.Errorf("%w: queue %q holds %d messages, its maximum (overflow policy reject); no dead letter moved", ipc.ErrFull, queue, q.cfg.MaxSize)
			}
			if limit < 0 || limit > room {
				var dead int
				if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM ipc_messages WHERE qid = ? AND dead = 1`, q.id).Scan(&dead); err != nil {
					return err
				}
				want := dead
				if limit > 0 {
					want = min(limit, dead)
				}
				if want > room {
					full = fmt.Errorf("%w: queue %q has room for %d messages (overflow policy reject); %d of %d dead letters moved", ipc.ErrFull, queue, room, room, want)
					limit = room
				}
			}
		}
		rows, err := tx.QueryContext(ctx, `SELECT priority, id, sent_ns, sender, headers, body FROM ipc_messages
			WHERE qid = ? AND dead = 1 ORDER BY id LIMIT ?`, q.id, limit)
		if err != nil {
			return err
		}
		var (
			ids   []int64
			prios []int
			sent  []int64
			msgs  []ipc.Outgoing
		)
		for rows.Next() {
			var prio int
			var id, ns int64
			var m ipc.Outgoing
			var headers sql.NullString
			if err := rows.Scan(&prio, &id, &ns, &m.Sender, &headers, &m.Body); err != nil {
				rows.Close()
				return err
			}
			m.Priority, m.Headers = ipc.PriorityOfRank(prio), decodeHeaders(headers)
			ids, prios, sent, msgs = append(ids, id), append(prios, prio), append(sent, ns), append(msgs, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		if _, err := b.insertRowsAt(ctx, tx, q.id, msgs, 0, sent); err != nil {
			return err
		}
		for i, id := range ids {
			if _, err := tx.ExecContext(ctx, `DELETE FROM ipc_messages WHERE qid = ? AND dead = 1 AND priority = ? AND id = ?`, q.id, prios[i], id); err != nil {
				return err
			}
		}
		n = len(ids)
		dropped, err := bound(ctx, tx, q, int64(n))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE ipc_queues SET depth = depth + ? - ?, dropped = dropped + ? WHERE id = ?`, n, dropped, dropped, q.id)
		return err
	})
	if err != nil {
		return 0, dbError(ctx, "redrive queue "+queue, err)
	}
	if n > 0 {
		b.ring("q", queue)
	}
	return n, full
}

// bellPath is the bell file of a queue (kind "q") or channel ("c").
func (b *Backend) bellPath(kind, name string) string {
	return filepath.Join(b.dir, kind+"-"+name+".bell")
}

// ring rings a bell. It is best effort: a waiter that misses it looks again
// within recheck.
func (b *Backend) ring(kind, name string) {
	fsutil.Ring(b.bellPath(kind, name))
}
