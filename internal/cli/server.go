package cli

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/netops-dev/netops/internal/server"
)

func newServerCmd(a *app) *cobra.Command {
	var o server.Options
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run an embedded NATS JetStream server for multi-host locks and messages",
		Long: `Run an embedded nats-server with JetStream (file store, every write synced to
disk) so locks and messages can be shared between netops processes on several
hosts with netops alone. Point clients at it with backend.kind: nats and
backend.url (or --backend nats --backend-url nats://HOST:PORT). It listens on
loopback unless --listen says otherwise. Stop it with SIGINT or SIGTERM.`,
		Example: `  netops server                                  # 127.0.0.1:4222, store in the state dir
  netops server --listen 0.0.0.0:4222 --store /var/lib/netops/nats`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
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
				fmt.Fprintf(a.ios.ErrOut, "netops server: NATS JetStream on %s, store %s\n", srv.ClientURL(), o.StoreDir)
			}
			<-cmd.Context().Done()
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Listen, "listen", "127.0.0.1:4222", "client address to listen on")
	cmd.Flags().StringVar(&o.StoreDir, "store", "", "JetStream store directory (default: STATE_DIR/nats)")
	cmd.Flags().StringVar(&o.ServerName, "server-name", "", "server name (default: generated)")
	return cmd
}
