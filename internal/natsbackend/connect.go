package natsbackend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/lock"
)

// DefaultURL is the server used when the backend config names none: the
// address `netops server` listens on by default.
const DefaultURL = "nats://127.0.0.1:4222"

// DefaultConnectTimeout bounds the connection to each server when ctx has
// no earlier deadline.
const DefaultConnectTimeout = 5 * time.Second

// ErrConfig marks a backend configuration netops cannot use (a credentials,
// certificate or key file that cannot be read, conflicting settings). The
// CLI maps it to the configuration exit code.
var ErrConfig = errors.New("invalid NATS backend configuration")

// Connect opens a NATS connection for cfg (cfg.Kind is not checked). Every
// URL in cfg.URL is a candidate server: the client connects to a live one
// and fails over to the others, reconnecting forever once connected. name
// is the client name shown by the server (e.g. "netops lock run backup").
//
// Authentication: a credentials file (cfg.Creds), a user and password, or a
// token. TLS: cfg.TLS.CA replaces the system roots to verify the server,
// cfg.TLS.Cert and Key are a client certificate; tls:// URLs require TLS.
//
// A server that cannot be reached or refuses the connection gives an error
// wrapping lock.ErrUnavailable whose message names the URL(s):
// "cannot reach NATS at nats://127.0.0.1:4222: ...".
func Connect(ctx context.Context, cfg config.Backend, name string) (*nats.Conn, error) {
	urls := cfg.URLs()
	if len(urls) == 0 {
		urls = []string{DefaultURL}
	}
	shown := redactURLs(urls)
	opts, err := connectOptions(cfg, name)
	if err != nil {
		return nil, err
	}
	timeout := DefaultConnectTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if timeout <= 0 || ctx.Err() != nil {
		return nil, unavailable(fmt.Sprintf("cannot reach NATS at %s", shown), context.Cause(ctx), ctx.Err())
	}
	opts = append(opts, nats.Timeout(timeout))

	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(strings.Join(urls, ","), opts...)
		done <- result{nc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, connectError(urls, shown, r.err, timeout)
		}
		return r.nc, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, unavailable(fmt.Sprintf("cannot reach NATS at %s", shown), ctx.Err())
	}
}

func connectOptions(cfg config.Backend, name string) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name(name),
		// Servers are tried in the order backend.url lists them (nearest
		// first), then the ones the cluster announces.
		nats.DontRandomize(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(2),
		// Callbacks nats.go would otherwise log to stderr.
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}),
	}
	readable := func(what, path string) error {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrConfig, what, err)
		}
		return f.Close()
	}
	methods := 0
	if cfg.Creds != "" {
		methods++
		if err := readable("backend.creds", cfg.Creds); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	}
	if cfg.User != "" || cfg.Password != "" {
		methods++
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if cfg.Token != "" {
		methods++
		opts = append(opts, nats.Token(cfg.Token))
	}
	if methods > 1 {
		return nil, fmt.Errorf("%w: use one of backend.creds, backend.user/password or backend.token", ErrConfig)
	}
	if cfg.TLS.CA != "" {
		if err := readable("backend.tls.ca", cfg.TLS.CA); err != nil {
			return nil, err
		}
		opts = append(opts, nats.RootCAs(cfg.TLS.CA))
	}
	if cfg.TLS.Cert != "" || cfg.TLS.Key != "" {
		if cfg.TLS.Cert == "" || cfg.TLS.Key == "" {
			return nil, fmt.Errorf("%w: backend.tls needs both cert and key for a client certificate", ErrConfig)
		}
		if err := readable("backend.tls.cert", cfg.TLS.Cert); err != nil {
			return nil, err
		}
		if err := readable("backend.tls.key", cfg.TLS.Key); err != nil {
			return nil, err
		}
		opts = append(opts, nats.ClientCert(cfg.TLS.Cert, cfg.TLS.Key))
	}
	return opts, nil
}

func connectError(urls []string, shown string, err error, timeout time.Duration) error {
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked):
		return unavailable(fmt.Sprintf("NATS at %s refused the credentials: %v", shown, err), err)
	case errors.Is(err, nats.ErrNoServers):
		// nats.go hides why each server failed; for one server, say why.
		if len(urls) == 1 {
			if u, perr := url.Parse(urls[0]); perr == nil && u.Host != "" {
				host := u.Host
				if u.Port() == "" {
					host = net.JoinHostPort(u.Hostname(), "4222")
				}
				c, derr := net.DialTimeout("tcp", host, min(timeout, time.Second))
				if derr != nil {
					return unavailable(fmt.Sprintf("cannot reach NATS at %s: %v", shown, derr), err, derr)
				}
				c.Close()
			}
		}
		return unavailable(fmt.Sprintf("cannot reach NATS at %s: no server answered (is `netops server` or nats-server running?)", shown), err)
	}
	return unavailable(fmt.Sprintf("cannot reach NATS at %s: %v", shown, err), err)
}

// redactURLs joins urls for messages, hiding passwords.
func redactURLs(urls []string) string {
	out := make([]string, len(urls))
	for i, s := range urls {
		out[i] = s
		if u, err := url.Parse(s); err == nil && u.User != nil {
			out[i] = u.Redacted()
		}
	}
	return strings.Join(out, ", ")
}

// backendError is an error with its own message that matches
// lock.ErrUnavailable (or another sentinel) and the underlying cause with
// errors.Is, without repeating the sentinel's text.
type backendError struct {
	msg  string
	errs []error
}

func (e *backendError) Error() string   { return e.msg }
func (e *backendError) Unwrap() []error { return e.errs }

// unavailable returns an error with message msg wrapping
// lock.ErrUnavailable and the given causes.
func unavailable(msg string, causes ...error) error {
	errs := []error{lock.ErrUnavailable}
	for _, c := range causes {
		if c != nil {
			errs = append(errs, c)
		}
	}
	return &backendError{msg: msg, errs: errs}
}
