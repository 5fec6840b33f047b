package ipc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Handler processes one message. nil means done (the message is
// acknowledged); an error means failed (it is retried later, and goes to
// the dead-letter queue after MaxDeliveries). ctx ends when the consumer
// stops.
type Handler func(ctx context.Context, m *Message) error

// Outcome is what happened to one delivery in Consume.
type Outcome struct {
	Message  *Message
	Err      error         // the handler's error; nil when it succeeded
	Acked    bool          // acknowledged (the handler succeeded)
	Dead     bool          // moved to the dead-letter queue
	Retry    time.Duration // when failed and not dead: the retry delay
	Duration time.Duration // how long the handler ran
	// SettleErr is an error acknowledging or nacking (e.g. ErrLost).
	SettleErr error
}

// ConsumeTotals counts what Consume did.
type ConsumeTotals struct {
	Handled int `json:"handled"` // handler runs
	Acked   int `json:"acked"`
	Failed  int `json:"failed"` // handler errors (retried or dead-lettered)
	Dead    int `json:"dead_lettered"`
	Lost    int `json:"lost"` // settled after the visibility timeout passed
}

// ConsumeOptions tune Consume.
type ConsumeOptions struct {
	// Concurrency is how many handlers run at once (0 means 1).
	Concurrency int
	// Count stops after this many handler runs (0: no limit).
	Count int
	// Idle stops a worker when no message arrives for this long (0: wait
	// forever).
	Idle time.Duration
	// Backoff is the retry delay after the n-th failed delivery (n >= 1);
	// nil means DefaultBackoff.
	Backoff func(n int) time.Duration
	// OnOutcome, when set, is called after each delivery is settled
	// (from the worker goroutines, one call at a time).
	OnOutcome func(Outcome)
}

// DefaultBackoff is 1 s after the first failure, doubling up to 1 min.
func DefaultBackoff(n int) time.Duration {
	d := time.Second
	for i := 1; i < n && d < time.Minute; i++ {
		d *= 2
	}
	return min(d, time.Minute)
}

// ErrStop, returned (wrapped) by a Handler, stops Consume after the message
// was returned to the queue (not counted as a failed delivery beyond the
// one it was): for handlers that cannot run at all (command not found).
var ErrStop = errors.New("consumer stopped")

// Consume receives messages from queue and runs h on each, with
// opts.Concurrency workers, until ctx ends, opts.Count handler runs are
// done, or every worker was idle for opts.Idle. While a handler runs, its
// message's visibility timeout is extended every third of it, so a slow
// handler keeps its message and a crashed consumer loses it after one
// timeout. A handler error nacks the message with the backoff delay (or
// dead-letters it after MaxDeliveries). Consume returns the totals; its
// error is nil when it stopped because of Count, Idle or ctx.
func Consume(ctx context.Context, b Backend, queue string, h Handler, opts ConsumeOptions) (ConsumeTotals, error) {
	st, err := b.QueueStats(ctx, queue)
	if err != nil {
		return ConsumeTotals{}, err
	}
	vis := st.Visibility
	if vis <= 0 {
		vis = DefaultVisibility
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.Backoff == nil {
		opts.Backoff = DefaultBackoff
	}
	wait := WaitForever
	if opts.Idle > 0 {
		wait = opts.Idle
	}
	var (
		mu      sync.Mutex // totals, OnOutcome
		totals  ConsumeTotals
		claimed atomic.Int64
		stopErr error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	report := func(o Outcome) {
		mu.Lock()
		defer mu.Unlock()
		totals.Handled++
		if o.Acked {
			totals.Acked++
		} else {
			totals.Failed++
		}
		if o.Dead {
			totals.Dead++
		}
		if errors.Is(o.SettleErr, ErrLost) {
			totals.Lost++
		}
		if opts.OnOutcome != nil {
			opts.OnOutcome(o)
		}
	}
	fail := func(err error) {
		mu.Lock()
		if stopErr == nil {
			stopErr = err
		}
		mu.Unlock()
		cancel()
	}
	worker := func() {
		for ctx.Err() == nil {
			if opts.Count > 0 && claimed.Add(1) > int64(opts.Count) {
				return
			}
			ds, err := b.Receive(ctx, queue, ReceiveOptions{Max: 1, Wait: wait})
			if err != nil {
				if ctx.Err() == nil {
					fail(err)
				}
				return
			}
			if len(ds) == 0 {
				return // idle
			}
			o, err := handleOne(ctx, ds[0], h, vis, opts.Backoff)
			if err != nil {
				fail(err)
				return
			}
			report(o)
		}
	}
	var wg sync.WaitGroup
	for range opts.Concurrency {
		wg.Go(worker)
	}
	wg.Wait()
	return totals, stopErr
}

// handleOne runs h on d, extending its visibility meanwhile, and settles it.
func handleOne(ctx context.Context, d Delivery, h Handler, vis time.Duration, backoff func(int) time.Duration) (Outcome, error) {
	m := d.Message()
	o := Outcome{Message: m}
	hctx, stop := context.WithCancel(ctx)
	extendDone := make(chan struct{})
	go func() {
		defer close(extendDone)
		t := time.NewTicker(max(vis/3, 100*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				if err := d.Extend(hctx); err != nil && hctx.Err() == nil {
					return // lost: nothing more to extend
				}
			}
		}
	}()
	start := time.Now()
	herr := h(hctx, m)
	o.Duration = time.Since(start)
	stop()
	<-extendDone
	o.Err = herr
	// Settle even when ctx ended (SIGTERM while a handler ran): the outcome
	// is known.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if herr == nil {
		o.Acked = true
		o.SettleErr = d.Ack(sctx)
		return o, nil
	}
	delay := backoff(m.Deliveries)
	if errors.Is(herr, ErrStop) || ctx.Err() != nil {
		delay = 0
	}
	dead, err := d.Nack(sctx, delay, herr.Error())
	o.Dead, o.SettleErr = dead, err
	if !dead {
		o.Retry = delay
	}
	if errors.Is(herr, ErrStop) {
		return o, herr
	}
	return o, nil
}

// ExecHandler returns a Handler that runs argv (never through a shell) per
// message: the body on its stdin (a file holding it, so a handler reads all
// of it even when the consumer dies), its stdout and stderr to the given
// writers, and the message's metadata in its environment (env is the base,
// usually os.Environ()):
//
//	NETOPS_MSG_ID, NETOPS_MSG_SEQ, NETOPS_MSG_QUEUE or NETOPS_MSG_CHANNEL,
//	NETOPS_MSG_PRIORITY, NETOPS_MSG_SENDER, NETOPS_MSG_TIME (RFC 3339),
//	NETOPS_MSG_DELIVERIES, NETOPS_MSG_HEADER_<NAME> (NAME upper-cased,
//	'-' and '.' as '_').
//
// Exit status 0 is success; any other status, or death by a signal, is a
// failure. A command that cannot be started fails with ErrStop. When ctx
// ends, the command gets SIGTERM, then SIGKILL after grace. timeout > 0
// bounds each run (a run killed by it is a failure).
func ExecHandler(argv []string, env []string, stdout, stderr io.Writer, timeout, grace time.Duration) Handler {
	return func(ctx context.Context, m *Message) error {
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		stdin, err := bodyFile(m.Body)
		if err != nil {
			return err
		}
		defer stdin.Close()
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Stdin = stdin
		cmd.Stdout, cmd.Stderr = stdout, stderr
		cmd.Env = append(slicesClone(env), MessageEnv(m)...)
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		if grace <= 0 {
			grace = 10 * time.Second
		}
		cmd.WaitDelay = grace
		err = cmd.Run()
		if err == nil {
			return nil
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				if ctx.Err() == context.DeadlineExceeded {
					return fmt.Errorf("handler %s timed out after %s (killed by %s)", argv[0], timeout, ws.Signal())
				}
				return fmt.Errorf("handler %s killed by %s", argv[0], ws.Signal())
			}
			return fmt.Errorf("handler %s exited %d", argv[0], ee.ExitCode())
		}
		if errors.Is(err, exec.ErrWaitDelay) {
			return nil // it exited 0 but left a child holding its output
		}
		return fmt.Errorf("%w: handler %s: %w", ErrStop, argv[0], err)
	}
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// MessageEnv returns the NETOPS_MSG_* variables for m (see ExecHandler).
func MessageEnv(m *Message) []string {
	env := []string{
		"NETOPS_MSG_ID=" + m.ID,
		"NETOPS_MSG_SEQ=" + strconv.FormatUint(m.Seq, 10),
		"NETOPS_MSG_PRIORITY=" + string(m.Priority),
		"NETOPS_MSG_SENDER=" + m.Sender,
		"NETOPS_MSG_TIME=" + m.Time.UTC().Format(time.RFC3339Nano),
		"NETOPS_MSG_DELIVERIES=" + strconv.Itoa(m.Deliveries),
	}
	if m.Queue != "" {
		env = append(env, "NETOPS_MSG_QUEUE="+m.Queue)
	}
	if m.Channel != "" {
		env = append(env, "NETOPS_MSG_CHANNEL="+m.Channel)
	}
	keys := make([]string, 0, len(m.Headers))
	for k := range m.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(k))
		env = append(env, "NETOPS_MSG_HEADER_"+name+"="+m.Headers[k])
	}
	return env
}
