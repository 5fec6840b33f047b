package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/ipc"
	"github.com/netops-dev/netops/internal/ipc/local"
	"github.com/netops-dev/netops/internal/render"
)

func newIPCCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ipc",
		Short: "Queues, channels and TCP sockets for messages between processes and hosts",
		Long: `Pass work and events between scripts, on one host or many.

Queues (work queues): each message goes to one receiver. Priorities high, normal,
low (highest first, FIFO within a priority); bounded size (--max-size, default
1000) with overflow drop-oldest (default) or reject; at-least-once delivery with a
visibility timeout (a message a receiver took but did not acknowledge comes back
after it, e.g. when the receiver crashed), retries and a dead-letter queue after
--max-deliveries. Queues are created with 'ipc queue create' or declared in the
config file (ipc.queues: name, max_size, overflow), where they exist implicitly.

Channels (publish/subscribe): every subscriber gets every message published while
it is subscribed; a durable subscriber (--durable NAME) also gets, when it comes
back, what was published while it was away (the newest 10000 messages are kept).

Point to point: 'ipc p2p send A B' and 'ipc p2p recv A B' use the queue A_to_B,
created on first use (one queue per direction).

Messages are UTF-8 text without NUL bytes, at most 1000000 bytes (encode binary
data, e.g. with base64). Each has an id, a sequence number, a send time, a sender
(--sender, default USER@HOST) and a priority, and may carry headers (--header k=v).

Backend: local (default; SQLite in the state dir, any number of processes, no
daemon; receivers wake up through inotify, they do not poll) or nats.

Exit codes: 0 ok; 1 no message within --wait (recv, subscribe, p2p recv) or
another failure; 64 bad input (unknown queue, invalid name, message too large or
not text, bad flag); 69 backend unreachable; 75 queue full (overflow reject);
78 configuration error; 127 consume/subscribe handler not found; 130 interrupted.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(newIPCQueueCmd(a), newIPCSendCmd(a), newIPCRecvCmd(a), newIPCConsumeCmd(a), newIPCPeekCmd(a),
		newIPCDLQCmd(a), newIPCPublishCmd(a), newIPCSubscribeCmd(a), newIPCChannelCmd(a), newIPCP2PCmd(a))
	cmd.AddCommand(ipcMonitorCmds(a)...)
	cmd.AddCommand(newIPCListenCmd(a), newIPCConnectCmd(a)) // TCP sockets: ipc_socket.go
	return cmd
}

// ipcBackend opens the configured ipc backend.
func (a *app) ipcBackend(ctx context.Context) (ipc.Backend, error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	switch cfg.WithDefaults().Backend.Kind {
	case config.BackendNATS:
		return openNATSIPC(ctx, cfg.Backend)
	default:
		st, err := a.store(ctx)
		if err != nil {
			return nil, err
		}
		dir, err := a.stateDir()
		if err != nil {
			return nil, err
		}
		return local.New(st, dir), nil
	}
}

// declaredQueue returns the config of queue name when the config file
// declares it.
func (a *app) declaredQueue(name string) (ipc.QueueConfig, bool) {
	cfg, err := a.config()
	if err != nil {
		return ipc.QueueConfig{}, false
	}
	q, ok := cfg.WithDefaults().Queue(name)
	if !ok {
		return ipc.QueueConfig{}, false
	}
	return ipc.QueueConfig{Name: q.Name, MaxSize: q.MaxSize, Overflow: ipc.Overflow(q.Overflow)}, true
}

// ensureDeclared creates (or updates) queue name in b when the config file
// declares it: declared queues exist implicitly.
func (a *app) ensureDeclared(ctx context.Context, b ipc.Backend, name string) error {
	if err := ipc.ValidateName("queue", name); err != nil {
		return err
	}
	if qc, ok := a.declaredQueue(name); ok {
		return b.EnsureQueue(ctx, qc)
	}
	return nil
}

// ensureAllDeclared ensures every queue of the config file.
func (a *app) ensureAllDeclared(ctx context.Context, b ipc.Backend) error {
	cfg, err := a.config()
	if err != nil {
		return err
	}
	for _, q := range cfg.WithDefaults().IPC.Queues {
		if err := b.EnsureQueue(ctx, ipc.QueueConfig{Name: q.Name, MaxSize: q.MaxSize, Overflow: ipc.Overflow(q.Overflow)}); err != nil {
			return err
		}
	}
	return nil
}

// openQueue opens the backend for a command on one queue.
func (a *app) openQueue(ctx context.Context, name string) (ipc.Backend, error) {
	if err := ipc.ValidateName("queue", name); err != nil {
		return nil, err
	}
	b, err := a.ipcBackend(ctx)
	if err != nil {
		return nil, err
	}
	if err := a.ensureDeclared(ctx, b, name); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func defaultSender() string {
	host, _ := os.Hostname()
	name := ""
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	s := name + "@" + host
	if len(s) > ipc.MaxNameLen {
		s = s[:ipc.MaxNameLen]
	}
	return s
}

// ---- queue ----

func newIPCQueueCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "Create, list, delete, purge queues and show their stats",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRunE,
	}
	cmd.AddCommand(newIPCQueueCreateCmd(a), newIPCQueueListCmd(a), newIPCQueueDeleteCmd(a), newIPCQueuePurgeCmd(a), newIPCQueueStatsCmd(a))
	return cmd
}

func newIPCQueueCreateCmd(a *app) *cobra.Command {
	var (
		qc      ipc.QueueConfig
		exist   bool
		overflw string
	)
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a queue",
		Long: `Create the queue NAME. A queue declared in the config file (ipc.queues) exists
without this, and its max_size and overflow from the config apply at each use.`,
		Example: `  netops ipc queue create jobs --max-size 5000 --overflow reject
  netops ipc queue create events --visibility 2m --max-deliveries 10`,
		Args: exactArgs(1, "one queue NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			qc.Name = args[0]
			qc.Overflow = ipc.Overflow(overflw)
			if qc.MaxSize <= 0 && cmd.Flags().Changed("max-size") {
				return usageErrorf(errors.New("--max-size must be greater than 0"))
			}
			if qc.MaxDeliveries <= 0 && cmd.Flags().Changed("max-deliveries") {
				return usageErrorf(errors.New("--max-deliveries must be greater than 0"))
			}
			if err := qc.WithDefaults().Validate(); err != nil {
				return usageErrorf(err)
			}
			b, err := a.ipcBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			err = b.CreateQueue(cmd.Context(), qc)
			if exist && errors.Is(err, ipc.ErrExists) {
				return nil
			}
			if err != nil {
				return err
			}
			if _, ok := a.declaredQueue(qc.Name); ok {
				a.log.Warn("queue is also declared in the config file: its max_size and overflow from the config apply at each use", "queue", qc.Name)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&qc.MaxSize, "max-size", ipc.DefaultMaxSize, "most messages the queue holds (ready and in flight)")
	fl.StringVar(&overflw, "overflow", string(ipc.DropOldest), "when full: drop-oldest (drop the oldest messages) or reject (refuse new ones, exit 75)")
	fl.IntVar(&qc.MaxDeliveries, "max-deliveries", ipc.DefaultMaxDeliveries, "deliveries before a message goes to the dead-letter queue")
	fl.DurationVar(&qc.Visibility, "visibility", ipc.DefaultVisibility, "visibility timeout: a message not acknowledged within it is delivered again")
	fl.BoolVar(&exist, "exist-ok", false, "succeed when the queue already exists (its settings are left as they are)")
	return cmd
}

func newIPCQueueListCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List queues with their depth",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := a.format()
			if err != nil {
				return err
			}
			b, err := a.ipcBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			stats, err := a.allQueueStats(cmd.Context(), b)
			if err != nil {
				return err
			}
			if format == render.JSON {
				return render.WriteJSON(a.ios.Out, stats)
			}
			t := render.NewTable("queue", "ready", "in flight", "dead", "max size", "overflow", "oldest")
			now := time.Now()
			for _, s := range stats {
				t.Add(s.Name, strconv.Itoa(s.Ready), strconv.Itoa(s.InFlight), strconv.Itoa(s.Dead),
					strconv.Itoa(s.MaxSize), string(s.Overflow), age(now, s.Oldest))
			}
			return t.WriteText(a.ios.Out, a.mode())
		},
	}
}

// allQueueStats returns the stats of every queue (declared ones included).
func (a *app) allQueueStats(ctx context.Context, b ipc.Backend) ([]ipc.QueueStats, error) {
	if err := a.ensureAllDeclared(ctx, b); err != nil {
		return nil, err
	}
	qs, err := b.Queues(ctx)
	if err != nil {
		return nil, err
	}
	stats := []ipc.QueueStats{}
	for _, q := range qs {
		s, err := b.QueueStats(ctx, q.Name)
		if errors.Is(err, ipc.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		stats = append(stats, s)
	}
	return stats, nil
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(time.Millisecond).String()
}

func newIPCQueueDeleteCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a queue with its messages and dead letters",
		Args:  exactArgs(1, "one queue NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := ipc.ValidateName("queue", args[0]); err != nil {
				return err
			}
			b, err := a.ipcBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			if err := b.DeleteQueue(cmd.Context(), args[0]); err != nil {
				return err
			}
			if _, ok := a.declaredQueue(args[0]); ok {
				a.log.Warn("queue is declared in the config file: it comes back (empty) at its next use", "queue", args[0])
			}
			return nil
		},
	}
}

func newIPCQueuePurgeCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "purge NAME",
		Short: "Delete the messages of a queue (not its dead letters); print how many",
		Args:  exactArgs(1, "one queue NAME"),
		RunE: a.onQueue(func(ctx context.Context, b ipc.Backend, queue string, format render.Format) error {
			n, err := b.PurgeQueue(ctx, queue)
			if err != nil {
				return err
			}
			if format == render.JSON {
				return render.WriteJSON(a.ios.Out, map[string]any{"queue": queue, "purged": n})
			}
			_, err = fmt.Fprintln(a.ios.Out, n)
			return err
		}),
	}
}

func newIPCQueueStatsCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "stats [NAME]",
		Short: "Show depth per priority, oldest age, in flight, dead letters and counters",
		Args:  maxArgs(1, "one queue NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := a.format()
			if err != nil {
				return err
			}
			if len(args) == 0 {
				b, err := a.ipcBackend(cmd.Context())
				if err != nil {
					return err
				}
				defer b.Close()
				stats, err := a.allQueueStats(cmd.Context(), b)
				if err != nil {
					return err
				}
				if format == render.JSON {
					return render.WriteJSON(a.ios.Out, stats)
				}
				t := render.NewTable("queue", "high", "normal", "low", "in flight", "dead", "oldest", "sent", "acked", "dropped")
				now := time.Now()
				for _, s := range stats {
					t.Add(s.Name, strconv.Itoa(s.ByPriority[ipc.High]), strconv.Itoa(s.ByPriority[ipc.Normal]), strconv.Itoa(s.ByPriority[ipc.Low]),
						strconv.Itoa(s.InFlight), strconv.Itoa(s.Dead), age(now, s.Oldest),
						strconv.FormatUint(s.Sent, 10), strconv.FormatUint(s.Acked, 10), strconv.FormatUint(s.Dropped, 10))
				}
				return t.WriteText(a.ios.Out, a.mode())
			}
			b, err := a.openQueue(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer b.Close()
			s, err := b.QueueStats(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if format == render.JSON {
				return render.WriteJSON(a.ios.Out, s)
			}
			var r render.Record
			r.Set("queue", s.Name)
			r.Set("ready", strconv.Itoa(s.Ready))
			for _, p := range ipc.Priorities() {
				r.Set("ready_"+string(p), strconv.Itoa(s.ByPriority[p]))
			}
			r.Set("in_flight", strconv.Itoa(s.InFlight))
			r.Set("dead_letters", strconv.Itoa(s.Dead))
			r.Set("oldest_age", age(time.Now(), s.Oldest))
			r.Set("max_size", strconv.Itoa(s.MaxSize))
			r.Set("overflow", string(s.Overflow))
			r.Set("max_deliveries", strconv.Itoa(s.MaxDeliveries))
			r.Set("visibility", s.Visibility.String())
			r.Set("sent", strconv.FormatUint(s.Sent, 10))
			r.Set("acked", strconv.FormatUint(s.Acked, 10))
			r.Set("dropped", strconv.FormatUint(s.Dropped, 10))
			return r.WriteText(a.ios.Out, a.mode())
		},
	}
}

// ---- sending ----

// sendFlags are the message flags of send, publish and p2p send.
type sendFlags struct {
	priority string
	sender   string
	headers  []string
	lines    bool
	null     bool
}

func (f *sendFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.priority, "priority", "p", "normal", "priority: high, normal or low")
	fl.StringVar(&f.sender, "sender", "", "sender ID (default USER@HOST)")
	fl.StringArrayVarP(&f.headers, "header", "H", nil, "header KEY=VALUE (repeatable)")
	fl.BoolVar(&f.lines, "lines", false, "read stdin and send one message per line")
	fl.BoolVarP(&f.null, "null", "0", false, "read stdin and send one message per NUL-terminated record")
}

// template checks the flags and returns the message every body is put in.
func (f *sendFlags) template() (ipc.Outgoing, error) {
	var m ipc.Outgoing
	p, err := ipc.ParsePriority(f.priority)
	if err != nil {
		return m, err
	}
	m.Priority = p
	m.Sender = f.sender
	if m.Sender == "" {
		m.Sender = defaultSender()
	}
	if f.lines && f.null {
		return m, usageErrorf(errors.New("--lines and --null (-0) exclude each other"))
	}
	for _, h := range f.headers {
		k, v, ok := strings.Cut(h, "=")
		if !ok {
			return m, usageErrorf(fmt.Errorf("--header %q: use KEY=VALUE", h))
		}
		if m.Headers == nil {
			m.Headers = map[string]string{}
		}
		m.Headers[k] = v
	}
	m.Body = nil
	return m, ipc.ValidateOutgoing(m)
}

// sendBatch is how many stdin records one transaction stores at most
// (fewer when stdin has no more at hand: a batch never holds more than the
// 256 KiB read buffer plus one record). Larger transactions cost less per
// message.
const sendBatch = 5000

// sendInput reads the messages of a send or publish (argument, stdin, or
// stdin split by --lines / -0) and hands them to put in batches. It stops
// at the first error; n is the number of messages put successfully.
func (a *app) sendInput(args []string, f *sendFlags, tmpl ipc.Outgoing, put func([]ipc.Outgoing) error) (n int, bulk bool, err error) {
	withBody := func(b []byte) ipc.Outgoing {
		m := tmpl
		m.Body = b
		return m
	}
	if len(args) == 1 && args[0] != "-" {
		if f.lines || f.null {
			return 0, false, usageErrorf(errors.New("--lines and --null read stdin: give no MESSAGE (or '-')"))
		}
		if err := put([]ipc.Outgoing{withBody([]byte(args[0]))}); err != nil {
			return 0, false, err
		}
		return 1, false, nil
	}
	if len(args) == 0 && a.ios.IsStdinTTY() {
		return 0, false, usageErrorf(errors.New("give the MESSAGE as an argument, or pipe it on stdin"))
	}
	if !f.lines && !f.null {
		body, err := io.ReadAll(io.LimitReader(a.ios.In, ipc.MaxBodySize+1))
		if err != nil {
			return 0, false, fmt.Errorf("read stdin: %w", err)
		}
		if len(body) > ipc.MaxBodySize {
			return 0, false, fmt.Errorf("%w: stdin has more than %d bytes, the largest message (use --lines or -0 to send one message per record)", ipc.ErrTooLarge, ipc.MaxBodySize)
		}
		if err := put([]ipc.Outgoing{withBody(body)}); err != nil {
			return 0, false, err
		}
		return 1, false, nil
	}
	sep := byte('\n')
	what := "line"
	if f.null {
		sep, what = 0, "record"
	}
	br := bufio.NewReaderSize(a.ios.In, 256*1024)
	var batch []ipc.Outgoing
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := put(batch); err != nil {
			return fmt.Errorf("%ss %d-%d: %w", what, n+1, n+len(batch), err)
		}
		n += len(batch)
		batch = batch[:0]
		return nil
	}
	for {
		rec, rerr := br.ReadSlice(sep)
		if errors.Is(rerr, bufio.ErrBufferFull) {
			// A record longer than the buffer: read the rest.
			full := append([]byte(nil), rec...)
			for errors.Is(rerr, bufio.ErrBufferFull) {
				rec, rerr = br.ReadSlice(sep)
				full = append(full, rec...)
				if len(full) > ipc.MaxBodySize+1 {
					return n, true, fmt.Errorf("%s %d: %w: longer than %d bytes", what, n+len(batch)+1, ipc.ErrTooLarge, ipc.MaxBodySize)
				}
			}
			rec = full
		}
		if len(rec) > 0 {
			body := bytes.TrimSuffix(rec, []byte{sep})
			if sep == '\n' {
				body = bytes.TrimSuffix(body, []byte{'\r'})
			}
			m := withBody(bytes.Clone(body))
			// The template (priority, sender, headers) was checked once;
			// each record only needs its body checked.
			if err := validateBody(m.Body); err != nil {
				if ferr := flush(); ferr != nil {
					return n, true, ferr
				}
				return n, true, fmt.Errorf("%s %d: %w (%d sent before it)", what, n+1, err, n)
			}
			batch = append(batch, m)
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				if ferr := flush(); ferr != nil {
					return n, true, ferr
				}
				return n, true, fmt.Errorf("read stdin: %w", rerr)
			}
			return n, true, flush()
		}
		// Send what we have when the batch is full or when more input
		// would mean waiting (a slow producer, like tail -f).
		if len(batch) >= sendBatch || br.Buffered() == 0 {
			if err := flush(); err != nil {
				return n, true, err
			}
		}
	}
}

func newIPCSendCmd(a *app) *cobra.Command {
	var f sendFlags
	cmd := &cobra.Command{
		Use:   "send QUEUE [MESSAGE | -]",
		Short: "Send a message (or one per stdin line with --lines) to a queue",
		Long: `Send MESSAGE, or stdin as one message, to QUEUE. With --lines every line of stdin
is a message (-0: every NUL-terminated record); they are stored in batches of up to
5000 per transaction, and sent as they come when stdin is slow (tail -f | ...).

Prints the message id (JSON with --output json); with --lines / -0, a summary on
stderr. When the queue is full, drop-oldest removes the oldest messages and says so
on stderr; reject refuses the message and exits 75 (with a batch: the messages
that fit are sent, the summary says how many).`,
		Example: `  netops ipc send jobs "resize /srv/img/42.png" --priority high
  find /srv/in -name '*.csv' | netops ipc send imports --lines
  netops ipc send events - --header host=$(hostname) < event.json`,
		Args: maxArgs(2, "QUEUE and an optional MESSAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf(errors.New("give the QUEUE to send to"))
			}
			format, err := a.format()
			if err != nil {
				return err
			}
			tmpl, err := f.template()
			if err != nil {
				return err
			}
			queue := args[0]
			b, err := a.openQueue(cmd.Context(), queue)
			if err != nil {
				return err
			}
			defer b.Close()
			return a.runSend(cmd.Context(), b, queue, args[1:], &f, tmpl, format)
		},
	}
	f.add(cmd)
	return cmd
}

// sendSummary is the JSON result of a bulk send.
type sendSummary struct {
	Queue   string `json:"queue,omitempty"`
	Channel string `json:"channel,omitempty"`
	Sent    int    `json:"sent"`
	Dropped int    `json:"dropped"`
	FirstID string `json:"first_id,omitempty"`
	LastID  string `json:"last_id,omitempty"`
}

func (a *app) runSend(ctx context.Context, b ipc.Backend, queue string, args []string, f *sendFlags, tmpl ipc.Outgoing, format render.Format) error {
	sum := sendSummary{Queue: queue}
	var last ipc.Message
	_, bulk, err := a.sendInput(args, f, tmpl, func(ms []ipc.Outgoing) error {
		res, err := b.Send(ctx, queue, ms)
		sum.Sent += len(res.Messages)
		sum.Dropped += res.Dropped
		if len(res.Messages) > 0 {
			if sum.FirstID == "" {
				sum.FirstID = res.Messages[0].ID
			}
			last = res.Messages[len(res.Messages)-1]
			sum.LastID = last.ID
		}
		return err
	})
	if err != nil && !bulk {
		return err
	}
	if sum.Dropped > 0 {
		a.log.Warn(fmt.Sprintf("queue %s was full: dropped the %d oldest message(s) (overflow drop-oldest)", queue, sum.Dropped))
	}
	if bulk {
		if !a.opts.quiet && format != render.JSON {
			fmt.Fprintf(a.ios.ErrOut, "sent %d message(s) to queue %s\n", sum.Sent, queue)
		}
		if format == render.JSON {
			if werr := render.WriteJSON(a.ios.Out, sum); werr != nil && err == nil {
				err = werr
			}
		}
		return err
	}
	if format == render.JSON {
		return render.WriteJSON(a.ios.Out, last)
	}
	_, err = fmt.Fprintln(a.ios.Out, last.ID)
	return err
}

// ---- receiving ----

// printer writes received messages: bodies (newline- or NUL-terminated) or
// JSON lines.
type printer struct {
	w    *bufio.Writer
	json bool
	null bool
}

// jsonMessage is a message in JSON output: the metadata plus the body.
type jsonMessage struct {
	ipc.Message
	Body string `json:"body"`
}

func (p *printer) print(m *ipc.Message) error {
	if p.json {
		return render.WriteJSONLine(p.w, jsonMessage{Message: *m, Body: string(m.Body)})
	}
	if _, err := p.w.Write(m.Body); err != nil {
		return err
	}
	sep := byte('\n')
	if p.null {
		sep = 0
	}
	return p.w.WriteByte(sep)
}

func (a *app) newPrinter(format render.Format, null bool) *printer {
	return &printer{w: bufio.NewWriterSize(a.ios.Out, 64*1024), json: format == render.JSON, null: null}
}

// recvFlags are the flags of recv and p2p recv.
type recvFlags struct {
	wait  time.Duration
	count int
	null  bool
}

func (f *recvFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.DurationVarP(&f.wait, "wait", "w", 0, "wait this long for each message (0: do not wait)")
	fl.IntVarP(&f.count, "count", "n", 1, "receive this many messages (0: all there are, until --wait passes without one)")
	fl.BoolVarP(&f.null, "null", "0", false, "end each printed body with NUL instead of a newline")
}

func (f *recvFlags) check() error {
	if f.wait < 0 {
		return usageErrorf(errors.New("--wait must not be negative"))
	}
	if f.count < 0 {
		return usageErrorf(errors.New("--count must not be negative"))
	}
	return nil
}

// errNoMessage is the exit 1 of recv and subscribe when --wait passed.
func errNoMessage(got, want int, what string, wait time.Duration) error {
	if got == 0 {
		return &exitError{code: ExitFailure, err: fmt.Errorf("no message on %s within %s", what, wait)}
	}
	return &exitError{code: ExitFailure, err: fmt.Errorf("%d of %d messages received from %s within --wait %s", got, want, what, wait)}
}

func newIPCRecvCmd(a *app) *cobra.Command {
	var f recvFlags
	cmd := &cobra.Command{
		Use:   "recv QUEUE",
		Short: "Receive messages from a queue and print them (at-least-once)",
		Long: `Receive up to --count messages from QUEUE, highest priority first and FIFO within
a priority, and print their bodies (one per line; -0: NUL-terminated; --output
json: one JSON object per line with id, seq, priority, sender, headers, time,
deliveries and body). Each batch is acknowledged once it was written to stdout: a
recv killed before that leaves its messages to come back after the queue's
visibility timeout.

Exit 0 when --count messages arrived (--count 0: at least one), 1 when --wait
passed first (what did arrive is printed).`,
		Example: `  netops ipc recv jobs --wait 30s
  netops ipc recv events --count 0 --output json   # drain what is there`,
		Args: exactArgs(1, "one QUEUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			return a.onQueue(func(ctx context.Context, b ipc.Backend, queue string, format render.Format) error {
				return a.runRecv(ctx, b, queue, "queue "+queue, &f, format)
			})(cmd, args)
		},
	}
	f.add(cmd)
	return cmd
}

// recvBatch is the most messages one Receive takes.
const recvBatch = 1000

// runRecv receives in batches: it prints a batch, flushes stdout, and then
// acknowledges that batch and takes the next in one round trip
// (ipc.AckAndReceive), so a message is acknowledged only once it was
// written. Killed in between, the printed batch comes back after the
// visibility timeout (at-least-once).
func (a *app) runRecv(ctx context.Context, b ipc.Backend, queue, what string, f *recvFlags, format render.Format) error {
	p := a.newPrinter(format, f.null)
	got := 0
	var printed []ipc.Delivery // printed, not acknowledged yet
	for f.count == 0 || got < f.count {
		want := recvBatch
		if f.count > 0 {
			want = min(want, f.count-got)
		}
		ds, err := ipc.AckAndReceive(ctx, b, queue, printed, ipc.ReceiveOptions{Max: want, Wait: f.wait})
		if err != nil && !errors.Is(err, ipc.ErrLost) {
			// The acknowledgement may not have been done (ctx ended, the
			// database failed): once more, on its own, even when ctx
			// ended. A best effort (what failed may have acknowledged
			// some): the first error tells.
			if len(printed) > 0 {
				_ = b.AckAll(context.WithoutCancel(ctx), printed)
			}
			return err
		}
		_ = a.ackErr(err) // lost: logged
		printed = nil
		if len(ds) == 0 {
			if f.count == 0 && got > 0 {
				return nil
			}
			return errNoMessage(got, f.count, what, f.wait)
		}
		var werr error
		for _, d := range ds {
			if werr = p.print(d.Message()); werr != nil {
				break
			}
		}
		if werr == nil {
			werr = p.w.Flush()
		}
		if werr != nil {
			// Not printed: give them back at once.
			sctx := context.WithoutCancel(ctx)
			for _, d := range ds {
				_, _ = d.Nack(sctx, 0, "")
			}
			return fmt.Errorf("write stdout: %w (the messages stay in the queue)", werr)
		}
		printed = ds
		got += len(ds)
	}
	// Printed: acknowledged even when ctx ended meanwhile.
	return a.ackErr(b.AckAll(context.WithoutCancel(ctx), printed))
}

// ackErr is nil for a lost acknowledgement, which it logs: the message was
// printed, and may be delivered again.
func (a *app) ackErr(err error) error {
	if errors.Is(err, ipc.ErrLost) {
		a.log.Warn("printed messages were not acknowledged in time and may be delivered again", "err", err)
		return nil
	}
	return err
}

func newIPCPeekCmd(a *app) *cobra.Command {
	var count int
	cmd := &cobra.Command{
		Use:   "peek QUEUE",
		Short: "Show the next messages of a queue without receiving them",
		Args:  exactArgs(1, "one QUEUE"),
		RunE: a.listQueue(func(ctx context.Context, b ipc.Backend, q string) ([]ipc.Message, error) {
			return b.Peek(ctx, q, count)
		}),
	}
	cmd.Flags().IntVarP(&count, "count", "n", 10, "show at most this many (0: all)")
	return cmd
}

// onQueue is the RunE of a command on the queue named by its one argument:
// the output format checked, the queue opened for fn and closed after it.
func (a *app) onQueue(fn func(ctx context.Context, b ipc.Backend, queue string, format render.Format) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		format, err := a.format()
		if err != nil {
			return err
		}
		b, err := a.openQueue(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		defer b.Close()
		return fn(cmd.Context(), b, args[0], format)
	}
}

// listQueue is the RunE of a command that lists messages of the queue
// named by its one argument (peek, dlq list).
func (a *app) listQueue(list func(ctx context.Context, b ipc.Backend, queue string) ([]ipc.Message, error)) func(*cobra.Command, []string) error {
	return a.onQueue(func(ctx context.Context, b ipc.Backend, queue string, format render.Format) error {
		ms, err := list(ctx, b, queue)
		if err != nil {
			return err
		}
		return a.writeMessages(ms, format)
	})
}

// writeMessages prints a list of messages: a table, or a JSON array.
func (a *app) writeMessages(ms []ipc.Message, format render.Format) error {
	if format == render.JSON {
		out := make([]jsonMessage, 0, len(ms))
		for _, m := range ms {
			out = append(out, jsonMessage{Message: m, Body: string(m.Body)})
		}
		return render.WriteJSON(a.ios.Out, out)
	}
	t := render.NewTable("id", "priority", "sender", "sent", "deliveries", "reason", "body")
	for _, m := range ms {
		body := string(m.Body)
		if len(body) > 80 && a.mode().TTY {
			body = body[:77] + "..."
		}
		t.Add(m.ID, string(m.Priority), render.Dash(m.Sender), m.Time.Local().Format(time.RFC3339), strconv.Itoa(m.Deliveries),
			render.Dash(m.Reason), body)
	}
	return t.WriteText(a.ios.Out, a.mode())
}

// ---- consume ----

func newIPCConsumeCmd(a *app) *cobra.Command {
	var (
		execCmd     string
		concurrency int
		count       int
		idle        time.Duration
		backoff     time.Duration
		timeout     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "consume QUEUE --exec COMMAND [ARGS...]",
		Short: "Run a handler command for each message of a queue",
		Long: `Receive messages from QUEUE and run COMMAND (never through a shell) for each: the
body on its stdin, the metadata in its environment (NETOPS_MSG_ID, NETOPS_MSG_SEQ,
NETOPS_MSG_QUEUE, NETOPS_MSG_PRIORITY, NETOPS_MSG_SENDER, NETOPS_MSG_TIME,
NETOPS_MSG_DELIVERIES, NETOPS_MSG_HEADER_<NAME>), its stdout and stderr passed
through. Exit status 0 acknowledges the message; anything else returns it to the
queue for a retry after a backoff (--backoff, doubling, at most 1m); after the
queue's max deliveries it goes to the dead-letter queue ('ipc dlq list').

While a handler runs, its message's visibility timeout is extended; if consume
itself dies, its messages come back after the timeout for another consumer. Put
'--' before handler arguments that start with '-'.

Runs until interrupted (exit 130; running handlers get SIGTERM and their messages
are returned), --count handler runs, or --wait without a message (exit 0).`,
		Example: `  netops ipc consume jobs --exec ./process-job.sh --concurrency 4
  netops ipc consume mails --exec /usr/bin/sendmail -- -t`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf(errors.New("give the QUEUE to consume"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if execCmd == "" {
				return usageErrorf(errors.New("--exec COMMAND is required"))
			}
			if concurrency < 1 || count < 0 || idle < 0 || backoff <= 0 || timeout < 0 {
				return usageErrorf(errors.New("--concurrency must be at least 1; --count, --wait and --timeout not negative; --backoff positive"))
			}
			argv := append([]string{execCmd}, args[1:]...)
			if _, err := exec.LookPath(execCmd); err != nil {
				return &exitError{code: ExitCannotRun, err: fmt.Errorf("handler %s: %w", execCmd, err)}
			}
			queue := args[0]
			b, err := a.openQueue(cmd.Context(), queue)
			if err != nil {
				return err
			}
			defer b.Close()
			h := ipc.ExecHandler(argv, os.Environ(), a.ios.Out, a.ios.ErrOut, timeout, 10*time.Second)
			started := time.Now()
			totals, err := ipc.Consume(cmd.Context(), b, queue, h, ipc.ConsumeOptions{
				Concurrency: concurrency, Count: count, Idle: idle,
				Backoff: func(n int) time.Duration {
					d := backoff
					for i := 1; i < n && d < time.Minute; i++ {
						d *= 2
					}
					return min(d, time.Minute)
				},
				OnOutcome: func(o ipc.Outcome) { a.logOutcome(queue, o) },
			})
			a.recordConsume(cmd.Context(), queue, execCmd, started, totals, err)
			if !a.opts.quiet {
				fmt.Fprintf(a.ios.ErrOut, "consumed %d message(s) from queue %s: %d acknowledged, %d failed, %d dead-lettered\n",
					totals.Handled, queue, totals.Acked, totals.Failed, totals.Dead)
			}
			if err != nil {
				if errors.Is(err, ipc.ErrStop) {
					return &exitError{code: ExitCannotRun, err: err}
				}
				return err
			}
			if cmd.Context().Err() != nil {
				return errInterrupted
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&execCmd, "exec", "", "handler COMMAND (its arguments follow QUEUE)")
	fl.IntVarP(&concurrency, "concurrency", "c", 1, "handlers running at once")
	fl.IntVarP(&count, "count", "n", 0, "stop after this many handler runs (0: no limit)")
	fl.DurationVarP(&idle, "wait", "w", 0, "stop when no message arrives for this long (0: wait forever)")
	fl.DurationVar(&backoff, "backoff", time.Second, "retry delay after a failure; doubles per delivery, at most 1m")
	fl.DurationVar(&timeout, "timeout", 0, "kill a handler running longer than this (a failure; 0: no limit)")
	return cmd
}

func (a *app) logOutcome(queue string, o ipc.Outcome) {
	m := o.Message
	switch {
	case o.SettleErr != nil:
		a.log.Warn("message settled late", "queue", queue, "id", m.ID, "err", o.SettleErr)
	case o.Dead:
		a.log.Warn("handler failed; message moved to the dead-letter queue", "queue", queue, "id", m.ID, "deliveries", m.Deliveries, "err", o.Err)
	case o.Err != nil:
		a.log.Warn("handler failed; message will be retried", "queue", queue, "id", m.ID, "deliveries", m.Deliveries, "retry_in", o.Retry, "err", o.Err)
	default:
		a.log.Debug("message handled", "queue", queue, "id", m.ID, "took", o.Duration)
	}
}

// ---- dead letters ----

func newIPCDLQCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List dead letters of a queue, or move them back into it",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRunE,
	}
	var listCount, redriveCount int
	list := &cobra.Command{
		Use:   "list QUEUE",
		Short: "List the dead letters of a queue (oldest first) with the reason",
		Args:  exactArgs(1, "one QUEUE"),
		RunE: a.listQueue(func(ctx context.Context, b ipc.Backend, q string) ([]ipc.Message, error) {
			return b.DeadLetters(ctx, q, listCount)
		}),
	}
	list.Flags().IntVarP(&listCount, "count", "n", 0, "show at most this many (0: all)")
	redrive := &cobra.Command{
		Use:   "redrive QUEUE",
		Short: "Move dead letters back to the end of their queue with a fresh delivery count",
		Args:  exactArgs(1, "one QUEUE"),
		RunE: a.onQueue(func(ctx context.Context, b ipc.Backend, queue string, format render.Format) error {
			n, err := b.Redrive(ctx, queue, redriveCount)
			if err != nil && n == 0 {
				return err
			}
			if format == render.JSON {
				if werr := render.WriteJSON(a.ios.Out, map[string]any{"queue": queue, "redriven": n}); werr != nil {
					return werr
				}
			} else if _, werr := fmt.Fprintln(a.ios.Out, n); werr != nil {
				return werr
			}
			return err
		}),
	}
	redrive.Flags().IntVarP(&redriveCount, "count", "n", 0, "move at most this many (0: all)")
	cmd.AddCommand(list, redrive)
	return cmd
}

// ---- channels ----

func newIPCPublishCmd(a *app) *cobra.Command {
	var f sendFlags
	cmd := &cobra.Command{
		Use:   "publish CHANNEL [MESSAGE | -]",
		Short: "Publish a message (or one per stdin line with --lines) to a channel",
		Long: `Publish MESSAGE, or stdin, to CHANNEL: every current subscriber gets it, and every
durable subscriber that is away gets it when it comes back. A channel needs no
creation. Prints the message id (a summary on stderr with --lines / -0).`,
		Example: `  netops ipc publish backups "nightly backup of db1 done"
  journalctl -f -o cat | netops ipc publish syslog --lines`,
		Args: maxArgs(2, "CHANNEL and an optional MESSAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf(errors.New("give the CHANNEL to publish to"))
			}
			format, err := a.format()
			if err != nil {
				return err
			}
			tmpl, err := f.template()
			if err != nil {
				return err
			}
			ch := args[0]
			if err := ipc.ValidateName("channel", ch); err != nil {
				return err
			}
			b, err := a.ipcBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			sum := sendSummary{Channel: ch}
			var last ipc.Message
			_, bulk, err := a.sendInput(args[1:], &f, tmpl, func(ms []ipc.Outgoing) error {
				out, err := b.Publish(cmd.Context(), ch, ms)
				sum.Sent += len(out)
				if len(out) > 0 {
					if sum.FirstID == "" {
						sum.FirstID = out[0].ID
					}
					last = out[len(out)-1]
					sum.LastID = last.ID
				}
				return err
			})
			if err != nil && !bulk {
				return err
			}
			if bulk {
				if !a.opts.quiet && format != render.JSON {
					fmt.Fprintf(a.ios.ErrOut, "published %d message(s) to channel %s\n", sum.Sent, ch)
				}
				if format == render.JSON {
					if werr := render.WriteJSON(a.ios.Out, sum); werr != nil && err == nil {
						err = werr
					}
				}
				return err
			}
			if format == render.JSON {
				return render.WriteJSON(a.ios.Out, last)
			}
			_, err = fmt.Fprintln(a.ios.Out, last.ID)
			return err
		},
	}
	f.add(cmd)
	cmd.Flags().Lookup("priority").Usage = "priority recorded with the message (channels deliver in publish order)"
	return cmd
}

func newIPCSubscribeCmd(a *app) *cobra.Command {
	var (
		durable string
		execCmd string
		count   int
		wait    time.Duration
		null    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "subscribe CHANNEL [--durable NAME] [--exec COMMAND [ARGS...]]",
		Short: "Print (or run a handler for) the messages published to a channel",
		Long: `Subscribe to CHANNEL and print each message (as recv does), or run --exec COMMAND
per message (as consume does: body on stdin, NETOPS_MSG_* in the environment).

Without --durable, only messages published from now on arrive. With --durable NAME
the backend keeps NAME's place: the next 'subscribe --durable NAME' starts after
the last message it printed (or whose handler finished), so nothing published
meanwhile is missed (up to the newest 10000 messages of the channel). A failing
handler is reported on stderr and the message is skipped (channels do not retry:
use a queue for work that must succeed); subscribe then exits 1 at the end.

Runs until interrupted, --count messages, or --wait without a message: exit 0 when
--count messages arrived (no --count: at least one), else 1.`,
		Example: `  netops ipc subscribe backups --durable notifier --exec ./notify.sh
  netops ipc subscribe syslog --output json | jq .body`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf(errors.New("give the CHANNEL to subscribe to"))
			}
			if len(args) > 1 && execCmd == "" {
				return usageErrorf(fmt.Errorf("unexpected argument %q (handler arguments need --exec)", args[1]))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 0 || wait < 0 {
				return usageErrorf(errors.New("--count and --wait must not be negative"))
			}
			format, err := a.format()
			if err != nil {
				return err
			}
			ch := args[0]
			if err := ipc.ValidateName("channel", ch); err != nil {
				return err
			}
			var h ipc.Handler
			if execCmd != "" {
				if _, err := exec.LookPath(execCmd); err != nil {
					return &exitError{code: ExitCannotRun, err: fmt.Errorf("handler %s: %w", execCmd, err)}
				}
				h = ipc.ExecHandler(append([]string{execCmd}, args[1:]...), os.Environ(), a.ios.Out, a.ios.ErrOut, timeout, 10*time.Second)
			}
			b, err := a.ipcBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			sub, err := b.Subscribe(cmd.Context(), ch, ipc.SubscribeOptions{Durable: durable})
			if err != nil {
				return err
			}
			defer sub.Close()
			p := a.newPrinter(format, null)
			got, failed := 0, 0
			for count == 0 || got < count {
				nctx, cancel := cmd.Context(), context.CancelFunc(func() {})
				if wait > 0 {
					nctx, cancel = context.WithTimeout(cmd.Context(), wait)
				}
				m, err := sub.Next(nctx)
				cancel()
				if err != nil {
					if cmd.Context().Err() != nil {
						return errInterrupted
					}
					if errors.Is(err, context.DeadlineExceeded) {
						if count == 0 && got > 0 {
							break
						}
						return errNoMessage(got, count, "channel "+ch, wait)
					}
					return err
				}
				if h != nil {
					if herr := h(cmd.Context(), m); herr != nil {
						if errors.Is(herr, ipc.ErrStop) {
							return &exitError{code: ExitCannotRun, err: herr}
						}
						failed++
						a.log.Warn("handler failed; message skipped", "channel", ch, "id", m.ID, "err", herr)
					}
				} else {
					if err := p.print(m); err == nil {
						err = p.w.Flush()
					}
					if err != nil {
						return fmt.Errorf("write stdout: %w", err)
					}
				}
				if err := sub.Ack(context.WithoutCancel(cmd.Context()), m); err != nil {
					return err
				}
				got++
			}
			if failed > 0 {
				return &exitError{code: ExitFailure, err: fmt.Errorf("%d of %d handler runs failed", failed, got)}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&durable, "durable", "", "durable subscriber NAME: receive what was published while away")
	fl.StringVar(&execCmd, "exec", "", "handler COMMAND run per message (its arguments follow CHANNEL)")
	fl.IntVarP(&count, "count", "n", 0, "stop after this many messages (0: no limit)")
	fl.DurationVarP(&wait, "wait", "w", 0, "stop when no message arrives for this long (0: wait forever)")
	fl.BoolVarP(&null, "null", "0", false, "end each printed body with NUL instead of a newline")
	fl.DurationVar(&timeout, "timeout", 0, "kill a handler running longer than this (0: no limit)")
	return cmd
}

func newIPCChannelCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "channel",
		Short: "List channels and durable subscribers; remove a durable subscriber",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRunE,
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List channels with their durable subscribers and what each has pending",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := a.format()
			if err != nil {
				return err
			}
			b, err := a.ipcBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			cs, err := b.Channels(cmd.Context())
			if err != nil {
				return err
			}
			if format == render.JSON {
				if cs == nil {
					cs = []ipc.ChannelStats{}
				}
				return render.WriteJSON(a.ios.Out, cs)
			}
			t := render.NewTable("channel", "published", "stored", "last", "subscriber", "pending")
			now := time.Now()
			for _, c := range cs {
				if len(c.Subscribers) == 0 {
					t.Add(c.Name, strconv.FormatUint(c.Published, 10), strconv.Itoa(c.Stored), age(now, c.Last), "-", "-")
				}
				for _, s := range c.Subscribers {
					t.Add(c.Name, strconv.FormatUint(c.Published, 10), strconv.Itoa(c.Stored), age(now, c.Last), s.Name, strconv.Itoa(s.Pending))
				}
			}
			return t.WriteText(a.ios.Out, a.mode())
		},
	}
	unsub := &cobra.Command{
		Use:   "unsubscribe CHANNEL NAME",
		Short: "Remove the durable subscriber NAME (its place in the channel is forgotten)",
		Args:  exactArgs(2, "CHANNEL and NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := a.ipcBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			return b.DeleteSubscriber(cmd.Context(), args[0], args[1])
		},
	}
	cmd.AddCommand(list, unsub)
	return cmd
}

// ---- point to point ----

func newIPCP2PCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "p2p",
		Short: "Point-to-point messages between two named peers (one queue per direction)",
		Long: `Messages from peer FROM to peer TO go through the queue FROM_to_TO (as in the
reference chapter: a conversation between A and B is the two queues A_to_B and
B_to_A). The queue is created on first use with the default settings, unless the
config file declares it. Everything recv and send do applies.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRunE,
	}
	var f sendFlags
	send := &cobra.Command{
		Use:     "send FROM TO [MESSAGE | -]",
		Short:   "Send a message from peer FROM to peer TO",
		Example: `  netops ipc p2p send backup monitor "backup done"`,
		Args: func(cmd *cobra.Command, args []string) error {
			return rangeArgs(cmd, args, 2, 3, "FROM, TO and an optional MESSAGE")
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := a.format()
			if err != nil {
				return err
			}
			if f.sender == "" {
				f.sender = args[0]
			}
			tmpl, err := f.template()
			if err != nil {
				return err
			}
			b, q, err := a.openP2P(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			defer b.Close()
			return a.runSend(cmd.Context(), b, q, args[2:], &f, tmpl, format)
		},
	}
	f.add(send)
	send.Flags().Lookup("sender").Usage = "sender ID (default FROM)"
	var rf recvFlags
	recv := &cobra.Command{
		Use:     "recv FROM TO",
		Short:   "Receive the messages peer FROM sent to peer TO",
		Example: `  netops ipc p2p recv backup monitor --wait 1m`,
		Args:    exactArgs(2, "FROM and TO"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := rf.check(); err != nil {
				return err
			}
			format, err := a.format()
			if err != nil {
				return err
			}
			b, q, err := a.openP2P(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			defer b.Close()
			return a.runRecv(cmd.Context(), b, q, fmt.Sprintf("%s -> %s (queue %s)", args[0], args[1], q), &rf, format)
		},
	}
	rf.add(recv)
	cmd.AddCommand(send, recv)
	return cmd
}

func rangeArgs(cmd *cobra.Command, args []string, lo, hi int, names string) error {
	if len(args) < lo || len(args) > hi {
		return usageErrorf(fmt.Errorf("%s takes %s, got %d argument(s)", cmd.CommandPath(), names, len(args)))
	}
	return nil
}

// openP2P opens the backend and makes sure the queue from -> to exists.
func (a *app) openP2P(ctx context.Context, from, to string) (ipc.Backend, string, error) {
	q, err := ipc.P2PQueue(from, to)
	if err != nil {
		return nil, "", err
	}
	b, err := a.openQueue(ctx, q)
	if err != nil {
		return nil, "", err
	}
	if _, ok := a.declaredQueue(q); !ok {
		if err := b.CreateQueue(ctx, ipc.QueueConfig{Name: q}); err != nil && !errors.Is(err, ipc.ErrExists) {
			b.Close()
			return nil, "", err
		}
	}
	return b, q, nil
}

// recordConsume adds one consume run to the local history (for 'ipc
// report'). A failure to record is logged, nothing more.
func (a *app) recordConsume(ctx context.Context, queue, handler string, started time.Time, t ipc.ConsumeTotals, runErr error) {
	if t.Handled == 0 && runErr != nil {
		return
	}
	st, err := a.store(context.WithoutCancel(ctx))
	if err != nil {
		a.log.Warn("consume history not recorded", "err", err)
		return
	}
	run := ipc.ConsumeRun{Queue: queue, Handler: handler, Backend: a.backendKind(), ConsumeTotals: t}
	detail, err := json.Marshal(run)
	if err != nil {
		return
	}
	status := "ok"
	if t.Failed > 0 || runErr != nil {
		status = "failed"
	}
	if _, err := st.RecordRun(context.WithoutCancel(ctx), runRecord("ipc-consume", queue, status, started, detail)); err != nil {
		a.log.Warn("consume history not recorded", "err", err)
	}
}

// validateBody checks one message body read from stdin (size, text).
func validateBody(b []byte) error {
	if len(b) > ipc.MaxBodySize {
		return fmt.Errorf("%w: body is %d bytes, at most %d are allowed", ipc.ErrTooLarge, len(b), ipc.MaxBodySize)
	}
	return ipc.ValidateBody(b)
}
