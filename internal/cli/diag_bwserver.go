package cli

import (
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/netops-dev/netops/internal/diag/bandwidth"
)

func newDiagBandwidthServerCmd(a *app) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "bandwidth-server",
		Short: "Serve bandwidth tests for 'check: bandwidth' rules (loopback by default)",
		Long: `Run the netops bandwidth test server. 'check: bandwidth' rules measure upload and
download throughput against it (port 9116 by default). It listens on loopback
unless --listen says otherwise; stop it with Ctrl-C.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("bandwidth server: %w", err)
			}
			if !a.opts.quiet {
				fmt.Fprintf(a.ios.ErrOut, "netops bandwidth server listening on %s\n", ln.Addr())
			}
			var srv bandwidth.Server
			err = srv.Serve(cmd.Context(), ln)
			if cmd.Context().Err() != nil {
				return nil
			}
			return err
		},
	}
	cmd.Flags().StringVar(&listen, "listen", bandwidth.DefaultAddr, "address to listen on")
	return cmd
}
