package render

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/netops-dev/netops/internal/diag"
)

// Markdown is the report format for wikis and tickets.
const Markdown Format = "markdown"

// DiagSummary writes the diag report as text, markdown or JSON.
func DiagSummary(w io.Writer, f Format, m Mode, s *diag.Summary) error {
	switch f {
	case JSON:
		return WriteJSON(w, s)
	case Markdown:
		return summaryMarkdown(w, s)
	}
	return summaryText(w, m, s)
}

func scores(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, " ")
}

func pct(f float64) string { return strconv.FormatFloat(f*100, 'f', 0, 64) + "%" }

func summaryText(w io.Writer, m Mode, s *diag.Summary) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s .. %s, %d target runs\n\n", Style(m.Color, Bold, "netops diag report"),
		s.Since.Local().Format(time.RFC3339), s.Until.Local().Format(time.RFC3339), s.Runs)
	t := NewTable("target", "type", "runs", "last", "score", "avg", "min", "not ok", "recent scores")
	t.StatusColumn = 3
	for _, ts := range s.Targets {
		t.Add(ts.Name, ts.Type, strconv.Itoa(ts.Runs), ts.LastStatus.String(), strconv.Itoa(ts.LastScore),
			strconv.FormatFloat(ts.AvgScore, 'f', 1, 64), strconv.Itoa(ts.MinScore), pct(ts.FailureRate), scores(ts.Scores))
	}
	if err := t.WriteText(&b, Mode{TTY: true, Color: m.Color}); err != nil {
		return err
	}
	b.WriteString("\n")
	r := NewTable("rule", "check", "runs", "failures", "rate", "top reason")
	for _, rs := range s.Rules {
		r.Add(rs.Name, rs.Check, strconv.Itoa(rs.Runs), strconv.Itoa(rs.Failures), pct(rs.FailureRate), Dash(rs.TopReason))
	}
	if err := r.WriteText(&b, Mode{TTY: true, Color: m.Color}); err != nil {
		return err
	}
	b.WriteString("\n" + Style(m.Color, Bold, "Drift since the previous run") + "\n")
	if len(s.Drift) == 0 {
		b.WriteString("  none\n")
	}
	for _, d := range s.Drift {
		fmt.Fprintf(&b, "  %s/%s  %s  %s\n", d.Target, d.Rule, d.Kind, d.Detail)
	}
	b.WriteString("\n" + Style(m.Color, Bold, "Recommendations") + "\n")
	for _, rec := range s.Recommendations {
		fmt.Fprintf(&b, "  - %s\n", rec)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func summaryMarkdown(w io.Writer, s *diag.Summary) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# netops diag report\n\n%s to %s, %d target runs.\n\n## Targets\n\n",
		s.Since.UTC().Format(time.RFC3339), s.Until.UTC().Format(time.RFC3339), s.Runs)
	b.WriteString("| target | type | runs | last status | last score | avg | min | not OK | recent scores |\n|---|---|---:|---|---:|---:|---:|---:|---|\n")
	for _, t := range s.Targets {
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %d | %.1f | %d | %s | %s |\n", mdEscape(t.Name), t.Type, t.Runs,
			t.LastStatus, t.LastScore, t.AvgScore, t.MinScore, pct(t.FailureRate), scores(t.Scores))
	}
	b.WriteString("\n## Rules\n\n| rule | check | runs | failures | rate | top reason |\n|---|---|---:|---:|---:|---|\n")
	for _, r := range s.Rules {
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %s | %s |\n", mdEscape(r.Name), r.Check, r.Runs, r.Failures, pct(r.FailureRate), Dash(r.TopReason))
	}
	b.WriteString("\n## Drift since the previous run\n\n")
	if len(s.Drift) == 0 {
		b.WriteString("None.\n")
	}
	for _, d := range s.Drift {
		fmt.Fprintf(&b, "- **%s/%s** %s: %s\n", mdEscape(d.Target), mdEscape(d.Rule), d.Kind, d.Detail)
	}
	b.WriteString("\n## Recommendations\n\n")
	for _, r := range s.Recommendations {
		fmt.Fprintf(&b, "- %s\n", r)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
