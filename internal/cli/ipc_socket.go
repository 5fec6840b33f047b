package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/netops-dev/netops/internal/ipc"
	"github.com/netops-dev/netops/internal/ipc/socket"
	"github.com/netops-dev/netops/internal/render"
)

func newIPCListenCmd(a *app) *cobra.Command {
	var (
		toQueue, toChannel, execCmd string
		framing                     string
		priority, sender            string
		maxFrame, maxConns          int
		idle, execTimeout           time.Duration
		allowRemote                 bool
		tlsCert, tlsKey             string
	)
	cmd := &cobra.Command{
		Use:   "listen HOST:PORT [--to-queue Q | --to-channel C | --exec CMD [ARGS...]]",
		Short: "Accept TCP connections and forward each line (or frame) to a queue, a channel or a program",
		Long: `Listen on HOST:PORT, cut what each connection sends into frames and forward
every frame:

  --to-queue Q     send it to queue Q (a message per frame)
  --to-channel C   publish it on channel C
  --exec CMD       run CMD [ARGS...] (never through a shell) with the frame on
                   stdin; CMD's stdout is sent back on the connection. The
                   environment has NETOPS_IPC_REMOTE (peer host:port),
                   NETOPS_IPC_CONN and NETOPS_IPC_FRAME (numbers). A non-zero
                   exit is logged and counted; the connection goes on.
  (none)           print it on stdout, one line per frame (JSON lines with
                   --output json)

Framing (--framing): "line" (default) cuts at "\n" ("\r\n" works, blank
lines are skipped, a last line without newline counts); "len" reads a 4-byte
big-endian length followed by that many bytes, and replies the same way.
A frame over --max-frame, a connection idle for --idle-timeout, or one over
--max-conns gets one line "netops ipc listen: <why>" and is closed. A
connection is closed once the peer has closed its side and every frame it
sent was forwarded, so 'netops ipc connect' (and 'nc -N') returns only then.

The listener binds to loopback unless --allow-remote is given. TLS with
--tls-cert and --tls-key. SIGINT/SIGTERM stop it gracefully: frames already
received are forwarded, then the counters are printed (stderr; stdout as a
JSON line {"type":"stats",...} with --output json).

Exit codes: 0 after a signal, 64 bad flags or a non-loopback address without
--allow-remote, 69 address already in use or backend unavailable, 127
--exec program not found.`,
		Example: `  netops ipc listen 127.0.0.1:9000 --to-queue jobs
  netops ipc listen 127.0.0.1:9000 --exec ./handle-request -- --verbose
  netops ipc listen 127.0.0.1:9443 --tls-cert cert.pem --tls-key key.pem --to-channel events
  printf 'job 1\njob 2\n' | nc -N 127.0.0.1 9000`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			addr, extra := args[0], args[1:]
			format, err := a.format(render.Text, render.JSON)
			if err != nil {
				return err
			}
			sinks := 0
			for _, s := range []string{toQueue, toChannel, execCmd} {
				if s != "" {
					sinks++
				}
			}
			if sinks > 1 {
				return usageErrorf(errors.New("use one of --to-queue, --to-channel and --exec"))
			}
			if len(extra) > 0 && execCmd == "" {
				return usageErrorf(fmt.Errorf("unexpected argument %q (arguments after HOST:PORT are for --exec)", extra[0]))
			}
			fr, err := socket.ParseFraming(framing)
			if err != nil {
				return usageErrorf(fmt.Errorf("--framing: %w", err))
			}
			if maxFrame <= 0 || maxConns <= 0 {
				return usageErrorf(errors.New("--max-frame and --max-conns must be positive"))
			}
			if (toQueue != "" || toChannel != "") && maxFrame > ipc.MaxBodySize {
				maxFrame = ipc.MaxBodySize
			}
			prio, err := ipc.ParsePriority(priority)
			if err != nil {
				return usageErrorf(err)
			}
			if cmd.Flags().Changed("priority") && toQueue == "" {
				return usageErrorf(errors.New("--priority applies to --to-queue only"))
			}
			var tlsCfg *tls.Config
			if tlsCert != "" || tlsKey != "" {
				if tlsCert == "" || tlsKey == "" {
					return usageErrorf(errors.New("--tls-cert and --tls-key go together"))
				}
				cert, err := tls.LoadX509KeyPair(tlsCert, tlsKey)
				if err != nil {
					return usageErrorf(fmt.Errorf("--tls-cert/--tls-key: %w", err))
				}
				tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			}

			var (
				handler socket.Handler
				outMu   sync.Mutex
			)
			out := a.ios.Out
			switch {
			case toQueue != "" || toChannel != "":
				if toQueue != "" {
					if err := ipc.ValidateName("queue", toQueue); err != nil {
						return usageErrorf(err)
					}
				} else if err := ipc.ValidateName("channel", toChannel); err != nil {
					return usageErrorf(err)
				}
				var be ipc.Backend
				if toQueue != "" {
					// A queue declared in the config is created; a missing
					// one fails now rather than at the first frame.
					if be, err = a.openQueue(ctx, toQueue); err != nil {
						return err
					}
					if _, err := be.QueueStats(ctx, toQueue); err != nil {
						be.Close()
						return err
					}
				} else if be, err = a.ipcBackend(ctx); err != nil {
					return err
				}
				defer be.Close()
				handler = backendSink(be, toQueue, toChannel, prio, sender)
			case execCmd != "":
				path, err := exec.LookPath(execCmd)
				if err != nil {
					return &exitError{code: ExitCannotRun, err: fmt.Errorf("--exec %s: %w", execCmd, err)}
				}
				argv := append([]string{path}, extra...)
				handler = socket.ExecHandler(socket.ExecOptions{
					Argv: argv, Env: os.Environ(), Stderr: a.ios.ErrOut, Timeout: execTimeout, MaxReply: maxFrame,
				})
			default:
				handler = func(_ context.Context, f socket.Frame) ([]byte, error) {
					outMu.Lock()
					defer outMu.Unlock()
					if format == render.JSON {
						return nil, render.WriteJSONLine(out, frameDoc(f))
					}
					_, err := out.Write(append(f.Data, '\n'))
					return nil, err
				}
			}

			ln, err := socket.Listen(ctx, addr, socket.ListenOptions{AllowRemote: allowRemote, TLS: tlsCfg})
			if err != nil {
				if errors.Is(err, socket.ErrRemoteNotAllowed) {
					return usageErrorf(fmt.Errorf("%w (add --allow-remote to listen on %s)", err, addr))
				}
				return err
			}
			if !socket.IsLoopback(addr) {
				a.log.Warn("listening on a non-loopback address: anyone who can reach it can send frames", "addr", ln.Addr().String(), "tls", tlsCfg != nil)
			}
			if !a.opts.quiet {
				fmt.Fprintf(a.ios.ErrOut, "netops ipc listen: listening on %s (%s framing, max %d connections)\n", ln.Addr(), fr, maxConns)
			}
			srv := socket.NewServer(handler, socket.Options{
				Framing: fr, MaxFrame: maxFrame, MaxConns: maxConns, IdleTimeout: idle, Log: a.log,
			})
			serveErr := srv.Serve(ctx, ln)
			st := srv.Stats()
			if format == render.JSON {
				outMu.Lock()
				_ = render.WriteJSONLine(out, struct {
					Type string `json:"type"`
					socket.Stats
				}{"stats", st})
				outMu.Unlock()
			} else if !a.opts.quiet {
				fmt.Fprintf(a.ios.ErrOut, "netops ipc listen: %d connections (%d refused), %d frames, %d bytes in, %d replies, %d errors\n",
					st.Connections, st.Refused, st.Frames, st.Bytes, st.Replies, st.Errors)
			}
			return serveErr
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&toQueue, "to-queue", "", "send each frame to this queue")
	fl.StringVar(&toChannel, "to-channel", "", "publish each frame on this channel")
	fl.StringVar(&execCmd, "exec", "", "run this program per frame (frame on stdin, stdout replied); its arguments follow HOST:PORT")
	fl.StringVar(&framing, "framing", "line", `"line" or "len" (4-byte big-endian length prefix)`)
	fl.StringVar(&priority, "priority", "normal", "priority of the messages sent with --to-queue: high, normal or low")
	fl.StringVar(&sender, "sender", "", `sender of the messages (default "tcp:<peer host:port>")`)
	fl.IntVar(&maxFrame, "max-frame", socket.DefaultMaxFrame, "largest frame in bytes (with --to-queue/--to-channel at most the message limit, 1000000)")
	fl.IntVar(&maxConns, "max-conns", socket.DefaultMaxConns, "connections served at once; more are told so and closed")
	fl.DurationVar(&idle, "idle-timeout", socket.DefaultIdleTimeout, "close a connection that sends nothing for this long")
	fl.DurationVar(&execTimeout, "exec-timeout", time.Minute, "stop an --exec program still running after this long (0: no limit)")
	fl.BoolVar(&allowRemote, "allow-remote", false, "allow a non-loopback address (e.g. 0.0.0.0:9000); consider --tls-cert")
	fl.StringVar(&tlsCert, "tls-cert", "", "serve TLS with this certificate (PEM)")
	fl.StringVar(&tlsKey, "tls-key", "", "private key of --tls-cert (PEM)")
	return cmd
}

// backendSink forwards frames to a queue or a channel. Frames the backend
// refuses as bad input (not UTF-8 text, too large, queue full with overflow
// reject) are rejected one by one; other failures (backend unavailable)
// close the connection, so the peer knows.
func backendSink(be ipc.Backend, queue, channel string, prio ipc.Priority, sender string) socket.Handler {
	return func(ctx context.Context, f socket.Frame) ([]byte, error) {
		s := sender
		if s == "" {
			s = "tcp:" + f.Remote
		}
		msg := []ipc.Outgoing{{Priority: prio, Sender: s, Body: f.Data}}
		var err error
		if queue != "" {
			_, err = be.Send(ctx, queue, msg)
		} else {
			_, err = be.Publish(ctx, channel, msg)
		}
		if err != nil && (errors.Is(err, ipc.ErrInvalid) || errors.Is(err, ipc.ErrTooLarge) || errors.Is(err, ipc.ErrFull)) {
			return nil, fmt.Errorf("%w: %w", socket.ErrRejected, err)
		}
		return nil, err
	}
}

func frameDoc(f socket.Frame) any {
	doc := struct {
		Type       string `json:"type"`
		Conn       uint64 `json:"conn"`
		Seq        uint64 `json:"seq"`
		Remote     string `json:"remote"`
		Data       string `json:"data,omitempty"`
		DataBase64 []byte `json:"data_base64,omitempty"`
	}{Type: "frame", Conn: f.Conn, Seq: f.Seq, Remote: f.Remote}
	if utf8.Valid(f.Data) {
		doc.Data = string(f.Data)
	} else {
		doc.DataBase64 = f.Data
	}
	return doc
}

func newIPCConnectCmd(a *app) *cobra.Command {
	var (
		framing  string
		reply    bool
		timeout  time.Duration
		useTLS   bool
		tlsCA    string
		maxFrame int
	)
	cmd := &cobra.Command{
		Use:   "connect HOST:PORT [MESSAGE | -]",
		Short: "Send a message or stdin to a TCP listener (like nc), optionally print the reply",
		Long: `Connect to HOST:PORT and send MESSAGE (as one line, or one frame with
--framing len), or stdin when MESSAGE is "-" or missing (as is with line
framing, like nc; as one frame with --framing len). Then close the sending
side and wait up to --timeout for the peer to close the connection: a netops
listener closes it once every frame was forwarded.

--reply prints what the peer sends back (the data of each frame with
--framing len) and fails (exit 1) if nothing came within --timeout. A
"netops ipc listen: ..." line from a netops listener (too many connections,
frame too large, handler failure) is printed as an error (exit 1).

Exit codes: 0 sent, 1 no reply in time (--reply) or refused by the listener,
69 connection refused, unreachable or not made within --timeout.`,
		Example: `  netops ipc connect 127.0.0.1:9000 "backup done"
  tail -n 100 app.log | netops ipc connect 127.0.0.1:9000 -
  netops ipc connect 127.0.0.1:9000 "status?" --reply --timeout 2s
  netops ipc connect 127.0.0.1:9443 --tls --tls-ca ca.pem "hello"`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			format, err := a.format(render.Text, render.JSON)
			if err != nil {
				return err
			}
			fr, err := socket.ParseFraming(framing)
			if err != nil {
				return usageErrorf(fmt.Errorf("--framing: %w", err))
			}
			if timeout <= 0 {
				return usageErrorf(errors.New("--timeout must be positive"))
			}
			var tlsCfg *tls.Config
			if tlsCA != "" && !useTLS {
				useTLS = true
			}
			if useTLS {
				tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
				if tlsCA != "" {
					pem, err := os.ReadFile(tlsCA)
					if err != nil {
						return usageErrorf(fmt.Errorf("--tls-ca: %w", err))
					}
					pool := x509.NewCertPool()
					if !pool.AppendCertsFromPEM(pem) {
						return usageErrorf(fmt.Errorf("--tls-ca: no PEM certificate in %s", tlsCA))
					}
					tlsCfg.RootCAs = pool
				}
			}
			req := socket.Request{Framing: fr, Reply: reply, Wait: timeout, MaxFrame: maxFrame}
			if len(args) == 2 && args[1] != "-" {
				req.Message = []byte(args[1])
			} else {
				req.Input = a.ios.In
			}
			var replyBuf bytes.Buffer
			if reply {
				if format == render.JSON {
					req.Out = &replyBuf
				} else {
					req.Out = a.ios.Out
				}
			}
			nc, err := socket.Dial(ctx, args[0], socket.DialOptions{Timeout: timeout, TLS: tlsCfg})
			if err != nil {
				return err
			}
			res, err := socket.Exchange(ctx, nc, req)
			if format == render.JSON {
				doc := struct {
					Address string `json:"address"`
					socket.Result
					Reply *string `json:"reply,omitempty"`
					Error string  `json:"error,omitempty"`
				}{Address: args[0], Result: res}
				if reply {
					s := replyBuf.String()
					doc.Reply = &s
				}
				if err != nil {
					doc.Error = err.Error()
				}
				if werr := render.WriteJSON(a.ios.Out, doc); werr != nil && err == nil {
					err = werr
				}
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&framing, "framing", "line", `"line" or "len" (4-byte big-endian length prefix)`)
	fl.BoolVar(&reply, "reply", false, "print what the peer sends back; exit 1 if nothing comes within --timeout")
	fl.DurationVar(&timeout, "timeout", 5*time.Second, "time to connect, and to wait for the peer to close (or reply) after sending")
	fl.BoolVar(&useTLS, "tls", false, "connect with TLS (server certificate verified against the system roots or --tls-ca)")
	fl.StringVar(&tlsCA, "tls-ca", "", "PEM file of the CA (or self-signed certificate) that signs the server's certificate; implies --tls")
	fl.IntVar(&maxFrame, "max-frame", socket.DefaultMaxFrame, "largest reply frame in bytes with --framing len")
	return cmd
}
