// Package server runs an embedded NATS server (nats-server/v2, in-process)
// with JetStream on a file store, for `netops server`: a user can try the
// distributed lock and IPC backend with netops alone, on one node or as a
// small cluster joined by routes.
//
// Defaults are the safe ones: client and cluster listeners bind to loopback
// unless an address says otherwise, the store directory is created 0700, and
// every JetStream write is synced to disk before it is acknowledged
// (sync_interval: always). Nothing is logged unless Options.Logger is set.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// DefaultListen is the client address used when Options.Listen is empty.
const DefaultListen = "127.0.0.1:4222"

// DefaultClusterName is the cluster name used when clustering is enabled
// without one.
const DefaultClusterName = "netops"

// DefaultReadyTimeout bounds startup when the context has no deadline.
const DefaultReadyTimeout = 30 * time.Second

// Options configure the embedded server.
type Options struct {
	// ConfigFile is a nats-server configuration file for anything the
	// other options do not cover (accounts, nkeys, leaf nodes, ...). When
	// set, it replaces every other option except StoreDir (used when the
	// file sets no store_dir), Logger, Debug and Trace; JetStream is
	// always enabled.
	ConfigFile string
	// Listen is the client address "host:port" (default DefaultListen). A
	// missing host means 127.0.0.1; use 0.0.0.0 or [::] to listen on every
	// interface. Port 0 or -1 picks a free port (see ClientURL).
	Listen string
	// StoreDir is the JetStream store directory (required). It is created
	// with mode 0700; an existing directory is tightened to 0700.
	StoreDir string
	// ServerName names this node (default: nats-server's generated id).
	// Required, and unique per node, when Cluster.Listen is set.
	ServerName string
	// Cluster, when Cluster.Listen is set, joins this node to a cluster.
	Cluster ClusterOptions
	// Client authentication (optional): either User and Password, or Token.
	User     string
	Password string
	Token    string
	// TLS for client connections (optional): Cert and Key enable TLS; CA
	// also requires and verifies client certificates.
	TLS TLSOptions
	// MaxStore caps JetStream file storage in bytes (0: nats-server default).
	MaxStore int64
	// Logger receives the server's log lines (nil: no logging at all).
	// Notices are Info, warnings Warn, errors and fatal errors Error, debug
	// and trace lines Debug (only when Debug or Trace is set).
	Logger *slog.Logger
	Debug  bool
	Trace  bool
}

// ClusterOptions join the server to a cluster through routes.
type ClusterOptions struct {
	// Name is the cluster name (default DefaultClusterName); every node of
	// a cluster uses the same name.
	Name string
	// Listen is the route address "host:port" (missing host: 127.0.0.1;
	// port 0 or -1: a free port). Empty disables clustering.
	Listen string
	// Routes are the other nodes' route URLs, like nats-route://h2:6222.
	Routes []string
}

// TLSOptions hold file paths for the client TLS listener.
type TLSOptions struct {
	Cert string
	Key  string
	CA   string
}

// Server is a running embedded NATS server.
type Server struct {
	ns   *natsserver.Server
	opts *natsserver.Options
}

// Start validates opts, starts the server and waits until it accepts client
// connections and JetStream is ready. ctx bounds the startup only (without
// a deadline, DefaultReadyTimeout does); stop the server with Shutdown.
func Start(ctx context.Context, o Options) (*Server, error) {
	nopts, err := natsOptions(o)
	if err != nil {
		return nil, err
	}
	if err := ensureStoreDir(nopts.StoreDir); err != nil {
		return nil, err
	}
	ns, err := natsserver.NewServer(nopts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	logger := &logAdapter{log: o.Logger, fatal: make(chan string, 1)}
	ns.SetLoggerV2(logger, o.Debug, o.Trace, false)
	// Start returns once the listeners are being set up; readiness is
	// checked below. A failure to listen is reported through Fatalf.
	ns.Start()

	srv := &Server{ns: ns, opts: nopts}
	ready := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ready, cancel = context.WithTimeout(ctx, DefaultReadyTimeout)
		defer cancel()
	}
	for {
		if ns.ReadyForConnections(50*time.Millisecond) && (!nopts.JetStream || ns.JetStreamEnabled()) {
			return srv, nil
		}
		select {
		case msg := <-logger.fatal:
			srv.Shutdown()
			return nil, fmt.Errorf("nats server on %s: %s", o.listenOrDefault(), msg)
		case <-ready.Done():
			srv.Shutdown()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("nats server on %s: %w", o.listenOrDefault(), ctx.Err())
			}
			return nil, fmt.Errorf("nats server on %s: not ready after %s", o.listenOrDefault(), DefaultReadyTimeout)
		default:
		}
	}
}

// ClientURL returns the URL clients use to reach this server, with the real
// port when a random one was asked for. A wildcard listen address (0.0.0.0,
// ::) is reported as the matching loopback address.
func (s *Server) ClientURL() string {
	if a, ok := s.ns.Addr().(*net.TCPAddr); ok {
		host := a.IP
		switch {
		case host.Equal(net.IPv4zero) || host == nil:
			host = net.IPv4(127, 0, 0, 1)
		case host.Equal(net.IPv6unspecified):
			host = net.IPv6loopback
		}
		u := url.URL{Scheme: "nats", Host: net.JoinHostPort(host.String(), strconv.Itoa(a.Port))}
		if s.opts.TLSConfig != nil {
			u.Scheme = "tls"
		}
		return u.String()
	}
	return s.ns.ClientURL()
}

// ClusterURL returns this node's route URL (nats-route://host:port), or ""
// when clustering is off.
func (s *Server) ClusterURL() string {
	a := s.ns.ClusterAddr()
	if a == nil {
		return ""
	}
	host := a.IP
	if host.Equal(net.IPv4zero) {
		host = net.IPv4(127, 0, 0, 1)
	} else if host.Equal(net.IPv6unspecified) {
		host = net.IPv6loopback
	}
	return "nats-route://" + net.JoinHostPort(host.String(), strconv.Itoa(a.Port))
}

// Name returns the server name (ServerName, or the generated id).
func (s *Server) Name() string { return s.ns.Name() }

// Version returns the embedded nats-server version.
func (s *Server) Version() string { return natsserver.VERSION }

// StoreDir returns the JetStream store directory.
func (s *Server) StoreDir() string { return s.opts.StoreDir }

// Shutdown stops the server: clients are disconnected and JetStream state
// is flushed to the store. It is safe to call more than once.
func (s *Server) Shutdown() { s.ns.Shutdown() }

// WaitForShutdown blocks until the server has shut down.
func (s *Server) WaitForShutdown() { s.ns.WaitForShutdown() }

// NATS returns the underlying nats-server, for tests and advanced use.
func (s *Server) NATS() *natsserver.Server { return s.ns }

func (o Options) listenOrDefault() string {
	if o.Listen == "" {
		return DefaultListen
	}
	return o.Listen
}

// natsOptions turns Options into nats-server options.
func natsOptions(o Options) (*natsserver.Options, error) {
	if o.ConfigFile != "" {
		return fileOptions(o)
	}
	if o.StoreDir == "" {
		return nil, errors.New("nats server: a store directory is required")
	}
	host, port, err := splitListen(o.listenOrDefault(), 4222)
	if err != nil {
		return nil, fmt.Errorf("nats server: listen address %q: %w", o.Listen, err)
	}
	n := &natsserver.Options{
		ServerName: o.ServerName,
		Host:       host,
		Port:       port,
		NoSigs:     true, // the embedding program owns signals
		Debug:      o.Debug,
		Trace:      o.Trace,

		JetStream:         true,
		StoreDir:          o.StoreDir,
		SyncAlways:        true, // sync_interval: always
		SyncInterval:      2 * time.Minute,
		JetStreamMaxStore: o.MaxStore,
	}
	switch {
	case o.Token != "" && (o.User != "" || o.Password != ""):
		return nil, errors.New("nats server: use either a token or a user and password, not both")
	case o.Token != "":
		n.Authorization = o.Token
	case o.User != "" || o.Password != "":
		if o.User == "" || o.Password == "" {
			return nil, errors.New("nats server: a user needs a password (and a password a user)")
		}
		n.Username, n.Password = o.User, o.Password
	}
	if o.TLS.Cert != "" || o.TLS.Key != "" || o.TLS.CA != "" {
		if o.TLS.Cert == "" || o.TLS.Key == "" {
			return nil, errors.New("nats server: TLS needs both a certificate and a key file")
		}
		tc := &natsserver.TLSConfigOpts{CertFile: o.TLS.Cert, KeyFile: o.TLS.Key, CaFile: o.TLS.CA, Verify: o.TLS.CA != ""}
		cfg, err := natsserver.GenTLSConfig(tc)
		if err != nil {
			return nil, fmt.Errorf("nats server: TLS: %w", err)
		}
		n.TLSConfig = cfg
		n.TLSVerify = tc.Verify
		n.TLSTimeout = 2
	}
	if o.Cluster.Listen != "" {
		if o.ServerName == "" {
			return nil, errors.New("nats server: a cluster node needs a server name, unique in the cluster")
		}
		chost, cport, err := splitListen(o.Cluster.Listen, 6222)
		if err != nil {
			return nil, fmt.Errorf("nats server: cluster listen address %q: %w", o.Cluster.Listen, err)
		}
		n.Cluster.Name = o.Cluster.Name
		if n.Cluster.Name == "" {
			n.Cluster.Name = DefaultClusterName
		}
		n.Cluster.Host, n.Cluster.Port = chost, cport
		for _, r := range o.Cluster.Routes {
			u, err := url.Parse(strings.TrimSpace(r))
			if err != nil || u.Host == "" {
				return nil, fmt.Errorf("nats server: route %q: want a URL like nats-route://host:6222", r)
			}
			n.Routes = append(n.Routes, u)
		}
	} else if len(o.Cluster.Routes) > 0 || o.Cluster.Name != "" {
		return nil, errors.New("nats server: cluster routes or name given without a cluster listen address")
	}
	return n, nil
}

// fileOptions reads o.ConfigFile. netops owns the signals and needs
// JetStream, so those two are forced; the store defaults to o.StoreDir.
func fileOptions(o Options) (*natsserver.Options, error) {
	n, err := natsserver.ProcessConfigFile(o.ConfigFile)
	if err != nil {
		return nil, fmt.Errorf("nats server: config file: %w", err)
	}
	n.NoSigs = true
	n.JetStream = true
	n.Debug, n.Trace = n.Debug || o.Debug, n.Trace || o.Trace
	if n.StoreDir == "" {
		if o.StoreDir == "" {
			return nil, fmt.Errorf("nats server: config file %s sets no jetstream store_dir and no store directory was given", o.ConfigFile)
		}
		n.StoreDir = o.StoreDir
	}
	if n.Cluster.Port != 0 && n.ServerName == "" {
		return nil, fmt.Errorf("nats server: config file %s: a cluster node needs server_name, unique in the cluster", o.ConfigFile)
	}
	return n, nil
}

// splitListen parses "host:port" with a loopback default host and maps
// ports 0 and -1 to nats-server's "random port".
func splitListen(s string, defPort int) (string, int, error) {
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		// A bare host or a bare port.
		if p, perr := strconv.Atoi(s); perr == nil {
			host, ps = "", strconv.Itoa(p)
		} else if !strings.Contains(s, ":") {
			host, ps = s, strconv.Itoa(defPort)
		} else {
			return "", 0, err
		}
	}
	if host == "" {
		host = "127.0.0.1"
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	if port == 0 {
		port = natsserver.RANDOM_PORT
	}
	return host, port, nil
}

// ensureStoreDir creates dir 0700, or tightens an existing one to 0700.
func ensureStoreDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("nats server: store directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("nats server: store directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("nats server: store directory %s is not a directory", dir)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("nats server: store directory: %w", err)
		}
	}
	return nil
}

// logAdapter sends nats-server log lines to slog and reports the first
// fatal error to Start.
type logAdapter struct {
	log   *slog.Logger
	fatal chan string
	once  sync.Once
}

func (l *logAdapter) emit(level slog.Level, format string, v []any) {
	if l.log == nil {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, v...), "component", "nats-server")
}

func (l *logAdapter) Noticef(format string, v ...any) { l.emit(slog.LevelInfo, format, v) }
func (l *logAdapter) Warnf(format string, v ...any)   { l.emit(slog.LevelWarn, format, v) }
func (l *logAdapter) Errorf(format string, v ...any)  { l.emit(slog.LevelError, format, v) }
func (l *logAdapter) Debugf(format string, v ...any)  { l.emit(slog.LevelDebug, format, v) }
func (l *logAdapter) Tracef(format string, v ...any)  { l.emit(slog.LevelDebug, format, v) }

func (l *logAdapter) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.emit(slog.LevelError, "%s", []any{msg})
	l.once.Do(func() { l.fatal <- msg })
}
