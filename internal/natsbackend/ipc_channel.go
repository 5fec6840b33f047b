package natsbackend

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/netops-dev/netops/internal/ipc"
)

// channelAckWait is how long a durable subscriber may hold a message it
// read without acknowledging it before the server sends it again.
const channelAckWait = time.Minute

func (b *IPC) channelStreamConfig(ch string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        channelStream(ch),
		Description: "netops ipc channel " + ch,
		Subjects:    []string{channelSubject(ch)},
		Retention:   jetstream.LimitsPolicy,
		MaxMsgs:     ipc.ChannelRetention,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		Replicas:    b.opts.Replicas,
		Metadata:    map[string]string{mdKind: "channel"},
	}
}

// channel returns the channel's stream, created on first use.
func (b *IPC) channel(ctx context.Context, ch string) (jetstream.Stream, error) {
	s, err := b.js.Stream(ctx, channelStream(ch))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = b.js.CreateStream(ctx, b.channelStreamConfig(ch))
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = b.js.Stream(ctx, channelStream(ch))
		}
	}
	if err != nil {
		return nil, opErr(ctx, "channel "+ch, err)
	}
	b.mu.Lock()
	b.channels[ch] = true
	b.mu.Unlock()
	return s, nil
}

// Publish implements ipc.Backend.
func (b *IPC) Publish(ctx context.Context, channel string, msgs []ipc.Outgoing) ([]ipc.Message, error) {
	if err := ipc.ValidateName("channel", channel); err != nil {
		return nil, err
	}
	if err := validateBatch(msgs); err != nil {
		return nil, err
	}
	what := "publish to channel " + channel
	b.mu.Lock()
	known := b.channels[channel]
	b.mu.Unlock()
	if !known {
		if _, err := b.channel(ctx, channel); err != nil {
			return nil, err
		}
	}
	now := time.Now()
	out := make([]*nats.Msg, len(msgs))
	for i, o := range msgs {
		out[i] = encodeMsg(channelSubject(channel), o, now)
	}
	var res []ipc.Message
	for done := 0; done < len(out); done += publishWindow {
		n := min(publishWindow, len(out)-done)
		results, err := b.publishAsync(ctx, out[done:done+n])
		for i, r := range results {
			if r.ack == nil {
				if err == nil {
					err = r.err
				}
				break
			}
			m := decodeMsg(out[done+i].Header, nil, r.ack.Sequence, now)
			m.Channel = channel
			m.Body = nil
			res = append(res, m)
		}
		if err != nil {
			if errors.Is(err, nats.ErrNoResponders) {
				// The stream was deleted meanwhile: create it next time.
				b.mu.Lock()
				delete(b.channels, channel)
				b.mu.Unlock()
			}
			return res, opErr(ctx, what, err)
		}
	}
	return res, nil
}

// Subscribe implements ipc.Backend. A non-durable subscriber is an ordered
// consumer starting after the last message stored when it subscribed. A
// durable one is a durable consumer (ack policy all) of that name; when it
// subscribes again with messages it read but did not acknowledge, the
// consumer is re-created to start right after the last acknowledged one,
// so those come again at once.
func (b *IPC) Subscribe(ctx context.Context, channel string, opts ipc.SubscribeOptions) (ipc.Subscription, error) {
	if err := ipc.ValidateName("channel", channel); err != nil {
		return nil, err
	}
	if opts.Durable != "" {
		if err := ipc.ValidateName("subscriber", opts.Durable); err != nil {
			return nil, err
		}
	}
	what := "subscribe to channel " + channel
	s, err := b.channel(ctx, channel)
	if err != nil {
		return nil, err
	}
	si, err := s.Info(ctx)
	if err != nil {
		return nil, opErr(ctx, what, err)
	}
	start := si.State.LastSeq + 1
	var cons jetstream.Consumer
	if opts.Durable == "" {
		cons, err = s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{channelSubject(channel)},
			DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:    start,
		})
		if err != nil {
			return nil, opErr(ctx, what, err)
		}
	} else {
		cons, err = b.durable(ctx, s, channel, opts.Durable, start)
		if err != nil {
			return nil, opErr(ctx, what, err)
		}
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return nil, opErr(ctx, what, err)
	}
	return &subscription{b: b, channel: channel, durable: opts.Durable != "", it: it, unacked: map[uint64]jetstream.Msg{}}, nil
}

func (b *IPC) durableConfig(channel, name string, start uint64) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "netops ipc durable subscriber " + name + " of channel " + channel,
		FilterSubject: channelSubject(channel),
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   start,
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       channelAckWait,
		MaxDeliver:    -1,
		MaxAckPending: -1,
		Replicas:      b.opts.Replicas,
	}
}

func (b *IPC) durable(ctx context.Context, s jetstream.Stream, channel, name string, start uint64) (jetstream.Consumer, error) {
	c, err := s.Consumer(ctx, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		c, err = s.CreateConsumer(ctx, b.durableConfig(channel, name, start))
		if errors.Is(err, jetstream.ErrConsumerExists) {
			return s.Consumer(ctx, name)
		}
		return c, err
	}
	if err != nil {
		return nil, err
	}
	ci := c.CachedInfo()
	if ci.NumAckPending == 0 {
		return c, nil
	}
	// Read but not acknowledged: start again after the last acknowledged.
	from := max(ci.Config.OptStartSeq, ci.AckFloor.Stream+1)
	if err := s.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	c, err = s.CreateConsumer(ctx, b.durableConfig(channel, name, from))
	if errors.Is(err, jetstream.ErrConsumerExists) {
		return s.Consumer(ctx, name)
	}
	return c, err
}

// subscription reads a channel.
type subscription struct {
	b       *IPC
	channel string
	durable bool
	it      jetstream.MessagesContext

	mu      sync.Mutex
	unacked map[uint64]jetstream.Msg // durable: read, not acknowledged
}

// Next implements ipc.Subscription.
func (s *subscription) Next(ctx context.Context) (*ipc.Message, error) {
	what := "read channel " + s.channel
	for {
		msg, err := s.it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s: %w", what, ctx.Err())
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil, fmt.Errorf("%s: %w: subscription closed", what, ipc.ErrUnavailable)
			}
			return nil, opErr(ctx, what, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			continue
		}
		m := decodeMsg(msg.Headers(), msg.Data(), md.Sequence.Stream, md.Timestamp)
		m.Channel = s.channel
		m.Deliveries = 0
		if s.durable {
			s.mu.Lock()
			s.unacked[m.Seq] = msg
			s.mu.Unlock()
		}
		return &m, nil
	}
}

// Ack implements ipc.Subscription (ack policy all: m and everything before).
func (s *subscription) Ack(ctx context.Context, m *ipc.Message) error {
	if !s.durable || m == nil {
		return nil
	}
	s.mu.Lock()
	msg := s.unacked[m.Seq]
	s.mu.Unlock()
	if msg == nil {
		return nil // acknowledged already (by a later message)
	}
	if err := ackRequest(ctx, s.b.nc, msg.Reply(), "+ACK"); err != nil {
		return opErr(ctx, fmt.Sprintf("ack message %s of channel %s", m.ID, s.channel), err)
	}
	s.mu.Lock()
	for seq := range s.unacked {
		if seq <= m.Seq {
			delete(s.unacked, seq)
		}
	}
	s.mu.Unlock()
	return nil
}

// Close implements ipc.Subscription.
func (s *subscription) Close() error {
	s.it.Stop()
	return nil
}

// Channels implements ipc.Backend.
func (b *IPC) Channels(ctx context.Context) ([]ipc.ChannelStats, error) {
	lister := b.js.ListStreams(ctx, jetstream.WithStreamListSubject("netops.ch.>"))
	var out []ipc.ChannelStats
	var streams []*jetstream.StreamInfo
	for si := range lister.Info() {
		if strings.HasPrefix(si.Config.Name, channelStreamPrefix) && si.Config.Metadata[mdKind] == "channel" {
			streams = append(streams, si)
		}
	}
	if err := lister.Err(); err != nil {
		return nil, opErr(ctx, "list channels", err)
	}
	for _, si := range streams {
		name := strings.TrimPrefix(si.Config.Name, channelStreamPrefix)
		cs := ipc.ChannelStats{Name: name, Published: si.State.LastSeq, Stored: int(si.State.Msgs), Subscribers: []ipc.SubscriberStats{}}
		if si.State.Msgs > 0 {
			cs.Last = si.State.LastTime
		}
		s, err := b.js.Stream(ctx, si.Config.Name)
		if err != nil {
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				continue
			}
			return nil, opErr(ctx, "list channels", err)
		}
		cl := s.ListConsumers(ctx)
		for ci := range cl.Info() {
			if ci.Config.Durable == "" {
				continue
			}
			active := ci.Created
			if ci.AckFloor.Last != nil && ci.AckFloor.Last.After(active) {
				active = *ci.AckFloor.Last
			}
			cs.Subscribers = append(cs.Subscribers, ipc.SubscriberStats{
				Name:    ci.Config.Durable,
				Pending: int(ci.NumPending) + ci.NumAckPending,
				Acked:   ci.AckFloor.Stream,
				Active:  active,
			})
		}
		if err := cl.Err(); err != nil {
			return nil, opErr(ctx, "list channels", err)
		}
		if cs.Stored == 0 && len(cs.Subscribers) == 0 {
			continue
		}
		slices.SortFunc(cs.Subscribers, func(x, y ipc.SubscriberStats) int { return strings.Compare(x.Name, y.Name) })
		out = append(out, cs)
	}
	slices.SortFunc(out, func(x, y ipc.ChannelStats) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}

// DeleteSubscriber implements ipc.Backend.
func (b *IPC) DeleteSubscriber(ctx context.Context, channel, durable string) error {
	if err := ipc.ValidateName("channel", channel); err != nil {
		return err
	}
	if err := ipc.ValidateName("subscriber", durable); err != nil {
		return err
	}
	what := fmt.Sprintf("delete subscriber %s of channel %s", durable, channel)
	err := b.js.DeleteConsumer(ctx, channelStream(channel), durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return &notFoundError{fmt.Sprintf("channel %q has no durable subscriber %q", channel, durable)}
	}
	return opErr(ctx, what, err)
}
