package ipc

import (
	"context"
	"errors"
)

// AckReceiver is implemented by backends that can acknowledge deliveries
// and receive the next messages in one round trip (the local backend: one
// transaction). Use it through AckAndReceive.
type AckReceiver interface {
	// AckAndReceive is AckAll(ctx, acks) then Receive(ctx, queue, opts),
	// with the results and errors of AckAndReceive.
	AckAndReceive(ctx context.Context, queue string, acks []Delivery, opts ReceiveOptions) ([]Delivery, error)
}

// AckAndReceive acknowledges acks (deliveries of b, from any queue; may be
// empty) and then receives from queue as b.Receive does: a receiver that
// works in batches settles one batch and takes the next in one round trip
// where b implements AckReceiver, else with AckAll and Receive.
//
// When some acknowledgements were lost, the others are done, the receive
// happens all the same, and its deliveries (maybe none) come back along
// with an error matching ErrLost. Any other error (which does not match
// ErrLost) means that no message was received and that the
// acknowledgements may not have been done: those messages are delivered
// again after their visibility timeout (at-least-once), unless the caller
// acknowledges them once more with AckAll (an ErrLost from that AckAll may
// then only mean they were acknowledged already). A caller that must
// acknowledge even when ctx ends (the messages were printed) does that
// with a context that does not end.
func AckAndReceive(ctx context.Context, b Backend, queue string, acks []Delivery, opts ReceiveOptions) ([]Delivery, error) {
	if ar, ok := b.(AckReceiver); ok {
		return ar.AckAndReceive(ctx, queue, acks, opts)
	}
	ackErr := b.AckAll(ctx, acks)
	if ackErr != nil && !errors.Is(ackErr, ErrLost) {
		return nil, ackErr
	}
	ds, err := b.Receive(ctx, queue, opts)
	if err != nil {
		return nil, err
	}
	return ds, ackErr
}
