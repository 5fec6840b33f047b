package local

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netops-dev/netops/internal/fsutil"
	"github.com/netops-dev/netops/internal/ipc"
)

// Channels: messages are rows of ipc_channel_messages (the newest
// ipc.ChannelRetention per channel are kept), ipc_channels counts them, and
// a durable subscriber is a row of ipc_subscribers whose cursor is the id of
// the last message it acknowledged. A subscriber reads the rows after its
// position; a non-durable one starts after the newest row of the whole table
// (ids only grow), a new durable one likewise.

// Publish implements ipc.Backend.
func (b *Backend) Publish(ctx context.Context, channel string, msgs []ipc.Outgoing) ([]ipc.Message, error) {
	if err := ipc.ValidateName("channel", channel); err != nil {
		return nil, err
	}
	if err := validateAll(msgs); err != nil {
		return nil, err
	}
	var out []ipc.Message
	err := b.st.Update(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		now := time.Now()
		ns := now.UnixNano()
		if _, err := tx.ExecContext(ctx, `INSERT INTO ipc_channels (name, created_ns) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, channel, ns); err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO ipc_channel_messages (channel, priority, sent_ns, sender, headers, body) VALUES (?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, m := range msgs {
			h, err := encodeHeaders(m.Headers)
			if err != nil {
				return err
			}
			body := m.Body
			if body == nil {
				body = []byte{}
			}
			r, err := stmt.ExecContext(ctx, channel, rank(m.Priority), ns, m.Sender, h, body)
			if err != nil {
				return err
			}
			id, err := r.LastInsertId()
			if err != nil {
				return err
			}
			out = append(out, ipc.Message{ID: strconv.FormatInt(id, 10), Seq: uint64(id), Channel: channel,
				Priority: ipc.PriorityOfRank(rank(m.Priority)), Sender: m.Sender, Headers: m.Headers, Time: now})
		}
		var stored int
		if err := tx.QueryRowContext(ctx, `UPDATE ipc_channels SET published = published + ?, stored = stored + ?, last_ns = ?
			WHERE name = ? RETURNING stored`, len(msgs), len(msgs), ns, channel).Scan(&stored); err != nil {
			return err
		}
		if excess := stored - ipc.ChannelRetention; excess > 0 {
			if _, err := tx.ExecContext(ctx, `DELETE FROM ipc_channel_messages WHERE id IN
				(SELECT id FROM ipc_channel_messages WHERE channel = ? ORDER BY id LIMIT ?)`, channel, excess); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE ipc_channels SET stored = stored - ? WHERE name = ?`, excess, channel); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, dbError(ctx, "publish to channel "+channel, err)
	}
	b.ring("c", channel)
	return out, nil
}

// Subscribe implements ipc.Backend.
func (b *Backend) Subscribe(ctx context.Context, channel string, opts ipc.SubscribeOptions) (ipc.Subscription, error) {
	if err := ipc.ValidateName("channel", channel); err != nil {
		return nil, err
	}
	if opts.Durable != "" {
		if err := ipc.ValidateName("subscriber", opts.Durable); err != nil {
			return nil, err
		}
	}
	s := &subscription{b: b, channel: channel, durable: opts.Durable, bell: b.bellPath("c", channel)}
	var err error
	if opts.Durable == "" {
		err = b.st.View(ctx, func(tx *sql.Tx) error {
			return tx.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM ipc_channel_messages`).Scan(&s.pos)
		})
	} else {
		err = b.st.Update(ctx, func(tx *sql.Tx) error {
			now := time.Now().UnixNano()
			err := tx.QueryRowContext(ctx, `UPDATE ipc_subscribers SET active_ns = ? WHERE channel = ? AND name = ? RETURNING cursor`,
				now, channel, opts.Durable).Scan(&s.pos)
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM ipc_channel_messages`).Scan(&s.pos); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO ipc_channels (name, created_ns) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, channel, now); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO ipc_subscribers (channel, name, cursor, created_ns, active_ns) VALUES (?, ?, ?, ?, ?)`,
				channel, opts.Durable, s.pos, now, now)
			return err
		})
	}
	if err != nil {
		return nil, dbError(ctx, "subscribe to channel "+channel, err)
	}
	return s, nil
}

// subscription is a local ipc.Subscription.
type subscription struct {
	b       *Backend
	channel string
	durable string
	bell    string

	closed atomic.Bool
	mu     sync.Mutex    // one Next at a time
	pos    int64         // id of the last message returned
	buf    []ipc.Message // read ahead, not returned yet
}

// readAhead is how many messages one look at the database reads.
const readAhead = 256

// Next implements ipc.Subscription.
func (s *subscription) Next(ctx context.Context) (*ipc.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil, fmt.Errorf("%w: subscription to channel %q is closed", ipc.ErrInvalid, s.channel)
	}
	for len(s.buf) == 0 {
		rung := fsutil.BellTime(s.bell)
		err := s.b.st.View(ctx, func(tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, `SELECT id, priority, 0, sent_ns, sender, headers, body, NULL FROM ipc_channel_messages
				WHERE channel = ? AND id > ? ORDER BY id LIMIT ?`, s.channel, s.pos, readAhead)
			if err != nil {
				return err
			}
			s.buf, err = scanMessages(rows, "")
			return err
		})
		if err != nil {
			return nil, dbError(ctx, "read channel "+s.channel, err)
		}
		if len(s.buf) > 0 {
			break
		}
		if !s.b.sleep(ctx, s.bell, rung, 0, nil) {
			return nil, fmt.Errorf("read channel %s: %w", s.channel, ctx.Err())
		}
	}
	m := s.buf[0]
	s.buf = s.buf[1:]
	m.Channel = s.channel
	s.pos = int64(m.Seq)
	return &m, nil
}

// Ack implements ipc.Subscription.
func (s *subscription) Ack(ctx context.Context, m *ipc.Message) error {
	if s.durable == "" || m == nil {
		return nil
	}
	err := s.b.st.Update(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE ipc_subscribers SET cursor = max(cursor, ?), active_ns = ? WHERE channel = ? AND name = ?`,
			int64(m.Seq), time.Now().UnixNano(), s.channel, s.durable)
		return err
	})
	if err != nil {
		return dbError(ctx, "acknowledge channel "+s.channel, err)
	}
	return nil
}

// Close implements ipc.Subscription.
func (s *subscription) Close() error {
	s.closed.Store(true)
	return nil
}

// Channels implements ipc.Backend.
func (b *Backend) Channels(ctx context.Context) ([]ipc.ChannelStats, error) {
	var out []ipc.ChannelStats
	err := b.st.View(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, `SELECT name, published, stored, last_ns FROM ipc_channels ORDER BY name`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var c ipc.ChannelStats
			var last int64
			if err := rows.Scan(&c.Name, &c.Published, &c.Stored, &last); err != nil {
				rows.Close()
				return err
			}
			if last != 0 {
				c.Last = time.Unix(0, last)
			}
			c.Subscribers = []ipc.SubscriberStats{}
			out = append(out, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for i := range out {
			srows, err := tx.QueryContext(ctx, `SELECT name, cursor, active_ns,
				(SELECT count(*) FROM ipc_channel_messages m WHERE m.channel = s.channel AND m.id > s.cursor)
				FROM ipc_subscribers s WHERE channel = ? ORDER BY name`, out[i].Name)
			if err != nil {
				return err
			}
			for srows.Next() {
				var sub ipc.SubscriberStats
				var active int64
				if err := srows.Scan(&sub.Name, &sub.Acked, &active, &sub.Pending); err != nil {
					srows.Close()
					return err
				}
				sub.Active = time.Unix(0, active)
				out[i].Subscribers = append(out[i].Subscribers, sub)
			}
			srows.Close()
			if err := srows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, dbError(ctx, "list channels", err)
	}
	return out, nil
}

// DeleteSubscriber implements ipc.Backend.
func (b *Backend) DeleteSubscriber(ctx context.Context, channel, durable string) error {
	if err := ipc.ValidateName("channel", channel); err != nil {
		return err
	}
	if err := ipc.ValidateName("subscriber", durable); err != nil {
		return err
	}
	err := b.st.Update(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM ipc_subscribers WHERE channel = ? AND name = ?`, channel, durable)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err != nil {
				return err
			}
			return &notFoundError{fmt.Sprintf("channel %q has no durable subscriber %q", channel, durable)}
		}
		return nil
	})
	if err != nil {
		return dbError(ctx, "delete subscriber "+durable, err)
	}
	return nil
}
