package natsbackend

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/netops-dev/netops/internal/ipc"
)

// publishWindow is how many asynchronous publishes Send keeps in flight.
const publishWindow = 2048

// isFull tells a publish refused because the stream is at MaxMsgs.
func isFull(err error) bool {
	return err != nil && strings.Contains(err.Error(), "maximum messages exceeded")
}

// Send implements ipc.Backend.
//
// A batch that fits in the queue (as its stream state shows before the
// send) is published asynchronously, in order, on one connection. A batch
// that does not fit is published one message at a time: with drop-oldest
// each refused message makes Send delete the oldest message of the queue
// and try again, with reject Send stops at the first refused message.
func (b *IPC) Send(ctx context.Context, queue string, msgs []ipc.Outgoing) (ipc.SendResult, error) {
	var res ipc.SendResult
	if err := ipc.ValidateName("queue", queue); err != nil {
		return res, err
	}
	if err := validateBatch(msgs); err != nil {
		return res, err
	}
	what := "send to queue " + queue
	qm, err := b.queue(ctx, queue, false)
	if err != nil {
		return res, err
	}
	now := time.Now()
	out := make([]*nats.Msg, len(msgs))
	for i, o := range msgs {
		p := o.Priority
		if p == "" {
			p = ipc.Normal
		}
		out[i] = encodeMsg(prioSubject(queue, p), o, now)
	}
	res, err = b.publishQueue(ctx, qm, out)
	if cerr := b.addCounters(ctx, queue, counters{Sent: uint64(len(res.Messages)), Dropped: uint64(res.Dropped)}); cerr != nil && err == nil {
		err = opErr(ctx, what+": update counters", cerr)
	}
	return res, err
}

// publishQueue stores encoded messages in a queue in order (see Send).
func (b *IPC) publishQueue(ctx context.Context, qm *queueMeta, out []*nats.Msg) (ipc.SendResult, error) {
	var res ipc.SendResult
	queue := qm.cfg.Name
	what := "send to queue " + queue
	si, err := qm.stream.Info(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			b.forget(queue)
			return res, queueNotFound(queue)
		}
		return res, opErr(ctx, what, err)
	}
	maxSize := int(si.Config.MaxMsgs)
	room := maxSize - int(si.State.Msgs)
	overflow := ipc.Overflow(si.Config.Metadata[mdOverflow])
	acks := make([]*jetstream.PubAck, len(out))
	collect := func() {
		for i, a := range acks {
			if a != nil {
				res.Messages = append(res.Messages, sentMessage(queue, out[i], a.Sequence))
			}
		}
	}
	var retry []int // indexes of messages to publish one at a time
	if len(out) <= room {
		// The common case: everything fits. Publish asynchronously.
		for done := 0; done < len(out); {
			n := min(publishWindow, len(out)-done)
			results, err := b.publishAsync(ctx, out[done:done+n])
			for i, r := range results {
				switch {
				case r.ack != nil:
					acks[done+i] = r.ack
				case isFull(r.err):
					// The queue filled up meanwhile (another sender).
					retry = append(retry, done+i)
				case err == nil:
					err = r.err
				}
			}
			if err != nil {
				collect()
				return res, publishErr(ctx, what, err, b, queue)
			}
			done += n
		}
	} else {
		for i := range out {
			retry = append(retry, i)
		}
	}
	// One at a time: the batch does not fit, or the queue filled up
	// meanwhile (then the messages published one at a time come after
	// the others of the batch).
	for _, i := range retry {
		for acks[i] == nil {
			ack, err := b.js.PublishMsg(ctx, out[i])
			switch {
			case err == nil:
				acks[i] = ack
				continue
			case !isFull(err):
				collect()
				return res, publishErr(ctx, what, err, b, queue)
			case overflow == ipc.Reject:
				collect()
				return res, fmt.Errorf("%w: queue %q holds %d messages, its maximum (overflow policy reject); %d of %d messages sent",
					ipc.ErrFull, queue, maxSize, len(res.Messages), len(out))
			}
			dropped, err := b.dropOldest(ctx, qm)
			if err != nil {
				collect()
				return res, opErr(ctx, what+": drop the oldest message", err)
			}
			res.Dropped += dropped
		}
	}
	collect()
	return res, nil
}

type pubResult struct {
	ack *jetstream.PubAck
	err error
}

// publishAsync publishes msgs asynchronously, in order, and waits for every
// acknowledgement. err is an error of the publishing itself (connection);
// the results tell each message's fate.
func (b *IPC) publishAsync(ctx context.Context, msgs []*nats.Msg) ([]pubResult, error) {
	futs := make([]jetstream.PubAckFuture, 0, len(msgs))
	var perr error
	for _, m := range msgs {
		f, err := b.js.PublishMsgAsync(m)
		if err != nil {
			perr = err
			break
		}
		futs = append(futs, f)
	}
	results := make([]pubResult, len(msgs))
	for i, f := range futs {
		select {
		case a := <-f.Ok():
			results[i].ack = a
		case err := <-f.Err():
			results[i].err = err
		case <-ctx.Done():
			return results, ctx.Err()
		}
	}
	for i := len(futs); i < len(msgs); i++ {
		results[i].err = perr
	}
	return results, perr
}

func publishErr(ctx context.Context, what string, err error, b *IPC, queue string) error {
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		// Nobody stores the subject: the queue was deleted meanwhile.
		if _, qerr := b.queue(ctx, queue, true); errors.Is(qerr, ipc.ErrNotFound) {
			return qerr
		}
	}
	return opErr(ctx, what, err)
}

func sentMessage(queue string, m *nats.Msg, seq uint64) ipc.Message {
	sm := decodeMsg(m.Header, nil, seq, time.Now())
	sm.Queue = queue
	sm.Body = nil
	return sm
}

// dropOldest deletes the oldest message of the queue; it returns 0 when
// that message went away by itself meanwhile (acknowledged).
func (b *IPC) dropOldest(ctx context.Context, qm *queueMeta) (int, error) {
	si, err := qm.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	if si.State.Msgs == 0 {
		return 0, nil
	}
	err = qm.stream.DeleteMsg(ctx, si.State.FirstSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) || err != nil && strings.Contains(err.Error(), "no message found") {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return 1, nil
}

// Receive implements ipc.Backend: it fetches from the high priority
// consumer first, then normal, then low, without waiting; when nothing is
// there and opts.Wait allows, it waits for a publish on the queue's
// subjects (a core NATS subscription) or the next poll (messages back
// from a visibility timeout or a retry delay do not publish anything).
func (b *IPC) Receive(ctx context.Context, queue string, opts ipc.ReceiveOptions) ([]ipc.Delivery, error) {
	if err := ipc.ValidateName("queue", queue); err != nil {
		return nil, err
	}
	qm, err := b.queue(ctx, queue, false)
	if err != nil {
		return nil, err
	}
	want := max(opts.Max, 1)
	var deadline time.Time
	if opts.Wait > 0 {
		deadline = time.Now().Add(opts.Wait)
	}
	var bell chan struct{}
	for {
		ds, err := b.fetch(ctx, qm, want)
		if err != nil || len(ds) > 0 {
			return ds, err
		}
		if opts.Wait == 0 || (!deadline.IsZero() && !time.Now().Before(deadline)) {
			return nil, nil
		}
		if bell == nil {
			// Subscribe, then look again: a message sent in between rings.
			bell = make(chan struct{}, 1)
			sub, err := b.nc.Subscribe(queueSubjects(queue), func(*nats.Msg) {
				select {
				case bell <- struct{}{}:
				default:
				}
			})
			if err != nil {
				return nil, opErr(ctx, "receive from queue "+queue, err)
			}
			defer func() { _ = sub.Unsubscribe() }()
			continue
		}
		wait := b.opts.Poll
		if !deadline.IsZero() {
			wait = min(wait, time.Until(deadline))
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-bell:
		case <-t.C:
		}
		t.Stop()
	}
}

// fetch gets up to want ready messages, highest priority first; messages
// delivered more than MaxDeliveries times (their visibility timeout passed
// after the last one) go to the dead-letter queue instead.
func (b *IPC) fetch(ctx context.Context, qm *queueMeta, want int) ([]ipc.Delivery, error) {
	var out []ipc.Delivery
	what := "receive from queue " + qm.cfg.Name
	for _, p := range ipc.Priorities() {
		if len(out) >= want {
			break
		}
		if err := ctx.Err(); err != nil {
			return out, err
		}
		batch, err := qm.cons[p].FetchNoWait(want - len(out))
		if err != nil {
			return out, b.fetchErr(ctx, what, qm, err)
		}
		for msg := range batch.Messages() {
			md, err := msg.Metadata()
			if err != nil {
				continue
			}
			if int(md.NumDelivered) > qm.cfg.MaxDeliveries {
				reason := fmt.Sprintf("visibility timeout (%s) passed after delivery %d of %d", qm.cfg.Visibility, md.NumDelivered-1, qm.cfg.MaxDeliveries)
				if err := b.toDLQ(ctx, qm, msg, md, int(md.NumDelivered)-1, reason); err != nil {
					return out, opErr(ctx, what+": move to the dead-letter queue", err)
				}
				continue
			}
			m := decodeMsg(msg.Headers(), msg.Data(), md.Sequence.Stream, md.Timestamp)
			m.Queue = qm.cfg.Name
			m.Deliveries = int(md.NumDelivered)
			m.Reason = ""
			out = append(out, &delivery{b: b, qm: qm, msg: msg, m: m})
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
			return out, b.fetchErr(ctx, what, qm, err)
		}
	}
	return out, nil
}

func (b *IPC) fetchErr(ctx context.Context, what string, qm *queueMeta, err error) error {
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrStreamNotFound) {
		b.forget(qm.cfg.Name)
		if _, qerr := b.queue(ctx, qm.cfg.Name, true); qerr != nil {
			return qerr
		}
		return fmt.Errorf("%s: the queue was re-created meanwhile; try again: %w", what, ipc.ErrUnavailable)
	}
	return opErr(ctx, what, err)
}

// toDLQ copies msg to the queue's dead-letter stream (deduplicated by the
// queue's id and stream sequence, so two processes moving it store it
// once) and then removes it from the queue.
func (b *IPC) toDLQ(ctx context.Context, qm *queueMeta, msg jetstream.Msg, md *jetstream.MsgMetadata, deliveries int, reason string) error {
	dm := nats.NewMsg(dlqSubject(qm.cfg.Name))
	for k, vs := range msg.Headers() {
		if k == jetstream.MsgIDHeader || strings.HasPrefix(k, "Nats-") {
			continue
		}
		dm.Header[k] = vs
	}
	if dm.Header.Get(hdrID) == "" {
		dm.Header.Set(hdrID, strconv.FormatUint(md.Sequence.Stream, 10))
	}
	if dm.Header.Get(hdrTime) == "" {
		dm.Header.Set(hdrTime, md.Timestamp.UTC().Format(time.RFC3339Nano))
	}
	dm.Header.Set(hdrReason, reason)
	dm.Header.Set(hdrDeliveries, strconv.Itoa(deliveries))
	dm.Header.Set(jetstream.MsgIDHeader, qm.id+"-"+strconv.FormatUint(md.Sequence.Stream, 10))
	dm.Data = msg.Data()
	if _, err := b.js.PublishMsg(ctx, dm); err != nil {
		return err
	}
	return ackRequest(ctx, b.nc, msg.Reply(), "+ACK")
}

// ackRequest sends an acknowledgement (+ACK, -NAK, +WPI) and waits for the
// server to confirm it.
func ackRequest(ctx context.Context, nc *nats.Conn, reply, body string) error {
	if reply == "" {
		return errors.New("message has no reply subject")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	_, err := nc.RequestWithContext(ctx, reply, []byte(body))
	return err
}

// delivery is one received queue message.
type delivery struct {
	b   *IPC
	qm  *queueMeta
	msg jetstream.Msg
	m   ipc.Message

	mu      sync.Mutex
	settled bool
}

func (d *delivery) Message() *ipc.Message { return &d.m }

func (d *delivery) settle() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return fmt.Errorf("%w: message %s of queue %s was already acknowledged or nacked", ipc.ErrInvalid, d.m.ID, d.m.Queue)
	}
	d.settled = true
	return nil
}

// Ack implements ipc.Delivery. The server confirms it; an Ack after the
// visibility timeout passed and the message was delivered again is not
// detected (nil).
func (d *delivery) Ack(ctx context.Context) error {
	if err := d.settle(); err != nil {
		return err
	}
	what := fmt.Sprintf("ack message %s of queue %s", d.m.ID, d.m.Queue)
	if err := ackRequest(ctx, d.b.nc, d.msg.Reply(), "+ACK"); err != nil {
		return opErr(ctx, what, err)
	}
	if err := d.b.addCounters(ctx, d.m.Queue, counters{Acked: 1}); err != nil {
		return opErr(ctx, what+": update counters", err)
	}
	return nil
}

// Nack implements ipc.Delivery.
func (d *delivery) Nack(ctx context.Context, delay time.Duration, reason string) (bool, error) {
	if err := d.settle(); err != nil {
		return false, err
	}
	what := fmt.Sprintf("nack message %s of queue %s", d.m.ID, d.m.Queue)
	if d.m.Deliveries >= d.qm.cfg.MaxDeliveries {
		if reason == "" {
			reason = "nacked"
		}
		reason = fmt.Sprintf("%s (after %d deliveries)", reason, d.m.Deliveries)
		md, err := d.msg.Metadata()
		if err != nil {
			return false, fmt.Errorf("%s: %w", what, err)
		}
		if err := d.b.toDLQ(ctx, d.qm, d.msg, md, d.m.Deliveries, reason); err != nil {
			return false, opErr(ctx, what+": move to the dead-letter queue", err)
		}
		return true, nil
	}
	body := "-NAK"
	if delay > 0 {
		body = fmt.Sprintf(`-NAK {"delay": %d}`, delay.Nanoseconds())
	}
	if err := ackRequest(ctx, d.b.nc, d.msg.Reply(), body); err != nil {
		return false, opErr(ctx, what, err)
	}
	return false, nil
}

// Extend implements ipc.Delivery: "work in progress" restarts the ack wait.
func (d *delivery) Extend(ctx context.Context) error {
	d.mu.Lock()
	settled := d.settled
	d.mu.Unlock()
	if settled {
		return fmt.Errorf("%w: message %s of queue %s was already acknowledged or nacked", ipc.ErrInvalid, d.m.ID, d.m.Queue)
	}
	if err := ackRequest(ctx, d.b.nc, d.msg.Reply(), "+WPI"); err != nil {
		return opErr(ctx, fmt.Sprintf("extend message %s of queue %s", d.m.ID, d.m.Queue), err)
	}
	return nil
}

// AckAll implements ipc.Backend: the acknowledgements go out together and
// Ack waits for every confirmation.
func (b *IPC) AckAll(ctx context.Context, ds []ipc.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	perQueue := map[string]uint64{}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	sem := make(chan struct{}, 256)
	for _, x := range ds {
		d, ok := x.(*delivery)
		if !ok || d.b != b {
			return fmt.Errorf("%w: AckAll got a delivery of another backend", ipc.ErrInvalid)
		}
		if err := d.settle(); err != nil {
			return err
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := ackRequest(ctx, b.nc, d.msg.Reply(), "+ACK")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = opErr(ctx, fmt.Sprintf("ack message %s of queue %s", d.m.ID, d.m.Queue), err)
				}
				return
			}
			perQueue[d.m.Queue]++
		}()
	}
	wg.Wait()
	for q, n := range perQueue {
		if err := b.addCounters(ctx, q, counters{Acked: n}); err != nil && firstErr == nil {
			firstErr = opErr(ctx, "ack messages of queue "+q+": update counters", err)
		}
	}
	return firstErr
}

// Peek implements ipc.Backend: messages no receiver got yet, highest
// priority first, in send order (messages waiting to be delivered again
// after a nack or a visibility timeout are not shown).
func (b *IPC) Peek(ctx context.Context, queue string, limit int) ([]ipc.Message, error) {
	if err := ipc.ValidateName("queue", queue); err != nil {
		return nil, err
	}
	what := "peek queue " + queue
	qm, err := b.queue(ctx, queue, true)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 10
	}
	var out []ipc.Message
	for _, p := range ipc.Priorities() {
		ci, err := qm.cons[p].Info(ctx)
		if err != nil {
			return nil, opErr(ctx, what, err)
		}
		ms, err := b.readStream(ctx, qm.stream, prioSubject(queue, p), ci.Delivered.Stream+1, limit-len(out))
		if err != nil {
			return nil, opErr(ctx, what, err)
		}
		for i := range ms {
			ms[i].Queue = queue
			ms[i].Deliveries = 0
		}
		out = append(out, ms...)
		if len(out) >= limit {
			break
		}
	}
	return out, nil
}

// readStream reads up to limit (<= 0: all) messages of subject from
// sequence from on.
func (b *IPC) readStream(ctx context.Context, s jetstream.Stream, subject string, from uint64, limit int) ([]ipc.Message, error) {
	var out []ipc.Message
	seq := max(from, 1)
	for limit <= 0 || len(out) < limit {
		raw, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, decodeMsg(raw.Header, raw.Data, raw.Sequence, raw.Time))
		seq = raw.Sequence + 1
	}
	return out, nil
}

// DeadLetters implements ipc.Backend.
func (b *IPC) DeadLetters(ctx context.Context, queue string, limit int) ([]ipc.Message, error) {
	if err := ipc.ValidateName("queue", queue); err != nil {
		return nil, err
	}
	what := "dead letters of queue " + queue
	if _, err := b.queue(ctx, queue, true); err != nil {
		return nil, err
	}
	s, err := b.js.Stream(ctx, dlqStream(queue))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, opErr(ctx, what, err)
	}
	ms, err := b.readStream(ctx, s, dlqSubject(queue), 1, limit)
	if err != nil {
		return nil, opErr(ctx, what, err)
	}
	for i := range ms {
		ms[i].Queue = queue
	}
	return ms, nil
}

// Redrive implements ipc.Backend: each dead letter is sent to the queue
// again (same id, priority, sender, headers and time; a new sequence) and
// then deleted from the dead-letter stream.
func (b *IPC) Redrive(ctx context.Context, queue string, limit int) (int, error) {
	if err := ipc.ValidateName("queue", queue); err != nil {
		return 0, err
	}
	what := "redrive dead letters of queue " + queue
	qm, err := b.queue(ctx, queue, true)
	if err != nil {
		return 0, err
	}
	s, err := b.js.Stream(ctx, dlqStream(queue))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, opErr(ctx, what, err)
	}
	n := 0
	seq := uint64(1)
	for limit <= 0 || n < limit {
		raw, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(dlqSubject(queue)))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return n, opErr(ctx, what, err)
		}
		seq = raw.Sequence + 1
		m := decodeMsg(raw.Header, raw.Data, raw.Sequence, raw.Time)
		out := nats.NewMsg(prioSubject(queue, m.Priority))
		for k, vs := range raw.Header {
			if k == hdrReason || k == hdrDeliveries || strings.HasPrefix(k, "Nats-") {
				continue
			}
			out.Header[k] = vs
		}
		out.Data = raw.Data
		res, err := b.publishQueue(ctx, qm, []*nats.Msg{out})
		if cerr := b.addCounters(ctx, queue, counters{Dropped: uint64(res.Dropped)}); cerr != nil && err == nil {
			err = cerr
		}
		if err != nil {
			return n, err
		}
		if err := s.DeleteMsg(ctx, raw.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, opErr(ctx, what, err)
		}
		n++
	}
	return n, nil
}
