package cli

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/netops-dev/netops/internal/diag"
	"github.com/netops-dev/netops/internal/render"
)

func newDiagReportCmd(a *app) *cobra.Command {
	var since, format string
	cmd := &cobra.Command{
		Use:   "report [TARGET...]",
		Short: "Report on recorded diag runs: scores, failure rates, drift, recommendations",
		Long: `Write a report from the local diag history: per target its runs, last status and
score, average and minimum score, share of runs not OK and recent scores; per rule
its failure rate and most common reason; what changed since the previous run
(status changes, ports newly open or closed, DNS answers changed, round-trip
regressions); and recommendations derived from that data.`,
		Example: `  netops diag report --since 7d
  netops diag report web1 --format markdown > report.md`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.opts.output != string(render.Text) && a.opts.output != string(render.JSON) {
				return usageErrorf(fmt.Errorf("--output %q: diag report writes text or json (or --format markdown)", a.opts.output))
			}
			f := render.Format(format)
			switch {
			case format == "" && a.opts.output == string(render.JSON):
				f = render.JSON
			case format == "":
				f = render.Text
			case f != render.Text && f != render.JSON && f != render.Markdown:
				return usageErrorf(fmt.Errorf("--format %q: choose text, markdown or json", format))
			}
			period, err := diag.ParseSince(since)
			if err != nil {
				return usageErrorf(fmt.Errorf("--since: %w", err))
			}
			st, err := a.store(cmd.Context())
			if err != nil {
				return err
			}
			runs, err := st.Runs(cmd.Context(), "diag", 0)
			if err != nil {
				return err
			}
			want := map[string]bool{}
			for _, t := range args {
				want[t] = true
			}
			now := time.Now()
			var entries []diag.HistoryEntry
			for _, r := range runs {
				if len(want) > 0 && !want[r.Name] {
					continue
				}
				var tr diag.TargetReport
				if err := json.Unmarshal(r.Detail, &tr); err != nil {
					a.log.Warn("skipping unreadable history row", "id", r.ID, "err", err)
					continue
				}
				entries = append(entries, diag.HistoryEntry{Started: r.Started, Target: tr})
			}
			return render.DiagSummary(a.ios.Out, f, a.mode(), diag.Summarize(entries, now.Add(-period), now))
		},
	}
	cmd.Flags().StringVar(&since, "since", "7d", "look back this far (7d, 36h, 90m)")
	cmd.Flags().StringVar(&format, "format", "", "text, markdown or json (default text; -o json also works)")
	return cmd
}
