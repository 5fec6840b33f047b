package cli

import (
	"github.com/spf13/cobra"

	"github.com/netops-dev/netops/internal/diag"
	"github.com/netops-dev/netops/internal/diag/probe"
	"github.com/netops-dev/netops/internal/render"
)

func newDiagDoctorCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Show what this machine allows diag to do (ICMP, open files, IPv6, resolver)",
		Long: `Check what this machine allows before running diag: unprivileged and raw ICMP
(net.ipv4.ping_group_range, CAP_NET_RAW), the open-file limit used by port scans,
IPv6 on loopback, the DNS resolver, and iperf3. Each finding says how to fix it.
Exit code: 0 when everything is allowed, 1 on warnings, 2 when ICMP is impossible,
3 when something could not be checked.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := a.format()
			if err != nil {
				return err
			}
			findings := diag.Doctor(cmd.Context(), diag.SystemDoctorEnv())
			worst := probe.OK
			for _, fd := range findings {
				worst = probe.Worse(worst, fd.Status)
			}
			if f == render.JSON {
				err = render.WriteJSON(a.ios.Out, findings)
			} else {
				t := render.NewTable("item", "status", "detail", "fix")
				t.StatusColumn = 1
				for _, fd := range findings {
					t.Add(fd.Item, fd.Status.String(), fd.Detail, render.Dash(fd.Fix))
				}
				err = t.WriteText(a.ios.Out, a.mode())
			}
			if err != nil {
				return err
			}
			if worst != probe.OK {
				return &exitError{code: int(worst), silent: true}
			}
			return nil
		},
	}
}
