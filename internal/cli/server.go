package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/natsbackend"
	"github.com/netops-dev/netops/internal/render"
	"github.com/netops-dev/netops/internal/server"
)

func newServerCmd(a *app) *cobra.Command {
	var (
		o      server.Options
		routes string
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run an embedded NATS JetStream server for multi-host locks and messages",
		Long: `Run an embedded nats-server with JetStream (file store, every write synced to
disk) so locks and messages can be shared between netops processes on several
hosts with netops alone. Point clients at it with backend.kind: nats and
backend.url (or --backend nats --backend-url nats://HOST:PORT). It listens on
loopback unless --listen says otherwise. Stop it with SIGINT or SIGTERM.

Several nodes form a JetStream cluster with --cluster-listen, --routes and a
unique --server-name each (3 nodes, and backend.replicas: 3 on the clients, keep
locks and queues available when one node fails). --nats-config takes a
nats-server configuration file for anything beyond these flags.

'netops server status' shows the server a client reaches: its cluster, the
servers the client can fail over to, and the leader and followers of each
stream.`,
		Example: `  netops server                                  # 127.0.0.1:4222, store in the state dir
  netops server --listen 0.0.0.0:4222 --store /var/lib/netops/nats

  # node 1 of 3 (nodes 2 and 3 alike, with their own --server-name and --routes)
  netops server --server-name n1 --listen 0.0.0.0:4222 \
    --cluster-listen 0.0.0.0:6222 --routes nats-route://h2:6222,nats-route://h3:6222`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.ConfigFile != "" {
				for _, name := range []string{"listen", "server-name", "cluster-name", "cluster-listen", "routes", "user", "password", "token", "tls-cert", "tls-key", "tls-ca"} {
					if cmd.Flags().Changed(name) {
						return usageErrorf(fmt.Errorf("--%s cannot be combined with --nats-config: set it in the nats-server config file", name))
					}
				}
			}
			if routes != "" {
				for r := range strings.SplitSeq(routes, ",") {
					if r = strings.TrimSpace(r); r != "" {
						o.Cluster.Routes = append(o.Cluster.Routes, r)
					}
				}
			}
			if o.StoreDir == "" {
				dir, err := a.stateDir()
				if err != nil {
					return err
				}
				o.StoreDir = filepath.Join(dir, "nats")
			}
			srv, err := server.Start(cmd.Context(), o)
			if err != nil {
				return err
			}
			if !a.opts.quiet {
				msg := fmt.Sprintf("netops server: NATS JetStream on %s, store %s", srv.ClientURL(), srv.StoreDir())
				if u := srv.ClusterURL(); u != "" {
					msg += fmt.Sprintf(", cluster routes on %s as %s", u, srv.Name())
				}
				fmt.Fprintln(a.ios.ErrOut, msg)
			}
			<-cmd.Context().Done()
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Listen, "listen", "127.0.0.1:4222", "client address to listen on")
	f.StringVar(&o.StoreDir, "store", "", "JetStream store directory (default: STATE_DIR/nats)")
	f.StringVar(&o.ServerName, "server-name", "", "server name (default: generated; required and unique per node in a cluster)")
	f.StringVar(&o.Cluster.Name, "cluster-name", "", "cluster name, the same on every node (default "+server.DefaultClusterName+" with --cluster-listen)")
	f.StringVar(&o.Cluster.Listen, "cluster-listen", "", "route address for other nodes, like 127.0.0.1:6222 (enables clustering)")
	f.StringVar(&routes, "routes", "", "other nodes' route URLs, comma-separated (nats-route://h2:6222,...)")
	f.StringVar(&o.User, "user", "", "require this user name from clients (with --password)")
	f.StringVar(&o.Password, "password", "", "require this password from clients (with --user)")
	f.StringVar(&o.Token, "token", "", "require this token from clients")
	f.StringVar(&o.TLS.Cert, "tls-cert", "", "TLS certificate file for client connections")
	f.StringVar(&o.TLS.Key, "tls-key", "", "TLS key file for client connections")
	f.StringVar(&o.TLS.CA, "tls-ca", "", "CA file: require and verify client certificates")
	// Not --config: that global flag names netops's own config file, which
	// still gives the state dir here.
	f.StringVar(&o.ConfigFile, "nats-config", "", "nats-server configuration file (replaces the flags above except --store)")
	cmd.AddCommand(newServerStatusCmd(a))
	return cmd
}

func newServerStatusCmd(a *app) *cobra.Command {
	var url string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the NATS server or cluster that netops clients reach",
		Long: `Connect like a client (backend.url, or --url) and report the server reached,
its cluster name, the server URLs the client can fail over to, JetStream use,
and for each stream its replica count, leader and followers (current, lag,
offline). Exit 69 when no server answers.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := a.format(render.Text, render.JSON)
			if err != nil {
				return err
			}
			cfg, err := a.config()
			if err != nil {
				return err
			}
			b := cfg.Backend
			if url != "" {
				b.URL = url
			} else if cfg.WithDefaults().Backend.Kind != config.BackendNATS {
				b.URL = natsbackend.DefaultURL
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			nc, err := natsbackend.Connect(ctx, b, "netops server status")
			if err != nil {
				return err
			}
			defer nc.Close()
			st, err := natsbackend.Status(ctx, nc)
			if err != nil {
				return err
			}
			if format == render.JSON {
				return render.WriteJSON(a.ios.Out, st)
			}
			return writeServerStatus(a, st)
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "server URL(s), comma-separated (default: backend.url, else "+natsbackend.DefaultURL+")")
	return cmd
}

func writeServerStatus(a *app, st natsbackend.ServerStatus) error {
	var r render.Record
	r.Set("server", st.Server)
	r.Set("url", st.URL)
	r.Set("version", st.Version)
	r.Set("cluster", render.Dash(st.Cluster))
	r.Set("servers", strings.Join(st.Servers, ","))
	r.Set("streams", strconv.Itoa(st.JetStream.Streams))
	r.Set("consumers", strconv.Itoa(st.JetStream.Consumers))
	r.Set("storage", strconv.FormatUint(st.JetStream.Storage, 10))
	if err := r.WriteText(a.ios.Out, a.mode()); err != nil {
		return err
	}
	if len(st.Streams) == 0 {
		return nil
	}
	if _, err := fmt.Fprintln(a.ios.Out); err != nil {
		return err
	}
	t := render.NewTable("STREAM", "MESSAGES", "BYTES", "REPLICAS", "LEADER", "FOLLOWERS")
	for _, s := range st.Streams {
		var peers []string
		for _, p := range s.Peers {
			state := "current"
			switch {
			case p.Offline:
				state = "offline"
			case !p.Current:
				state = "lag " + strconv.FormatUint(p.Lag, 10)
			}
			peers = append(peers, p.Name+"("+state+")")
		}
		t.Add(s.Name, strconv.FormatUint(s.Messages, 10), strconv.FormatUint(s.Bytes, 10), strconv.Itoa(s.Replicas),
			render.Dash(s.Leader), render.Dash(strings.Join(peers, " ")))
	}
	return t.WriteText(a.ios.Out, a.mode())
}
