package render

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/netops-dev/netops/internal/diag"
	"github.com/netops-dev/netops/internal/diag/probe"
)

// Formats diag adds to text and json.
const (
	JUnit      Format = "junit"
	TAP        Format = "tap"
	Nagios     Format = "nagios"
	Prometheus Format = "prometheus"
)

// DiagFormats are the formats `netops diag` accepts.
func DiagFormats() []Format { return []Format{Text, JSON, JUnit, TAP, Nagios, Prometheus} }

// DiagReport writes a diag report in format f.
func DiagReport(w io.Writer, f Format, m Mode, rep *diag.Report) error {
	switch f {
	case JSON:
		return WriteJSON(w, rep)
	case JUnit:
		return diagJUnit(w, rep)
	case TAP:
		return diagTAP(w, rep)
	case Nagios:
		return diagNagios(w, rep)
	case Prometheus:
		return diagPrometheus(w, rep)
	}
	return diagText(w, m, rep)
}

// mainValue is the most telling measured value of a check, for the text table.
func mainValue(c diag.CheckResult) string {
	if len(c.Metrics) == 0 {
		return "-"
	}
	for _, name := range []string{probe.MetricRTT, probe.MetricMbps, "open", "alive"} {
		for _, mt := range c.Metrics {
			if mt.Name == name {
				return formatMetric(mt)
			}
		}
	}
	return formatMetric(c.Metrics[0])
}

func formatMetric(mt probe.Metric) string {
	switch mt.Unit {
	case "s":
		return probe.FormatSeconds(mt.Value)
	case "%":
		return strconv.FormatFloat(mt.Value, 'f', 1, 64) + "%"
	case "":
		return mt.Name + "=" + strconv.FormatFloat(mt.Value, 'f', -1, 64)
	}
	return strconv.FormatFloat(mt.Value, 'f', 2, 64) + " " + mt.Unit
}

func diagText(w io.Writer, m Mode, rep *diag.Report) error {
	if !m.TTY {
		// Stable lines: target rule check status reason value message.
		t := NewTable()
		for _, tr := range rep.Targets {
			for _, c := range tr.Checks {
				t.Add(tr.Name, c.Rule, c.Check, c.Status.String(), Dash(c.Reason), mainValue(c), c.Message)
			}
			t.Add(tr.Name, "-", "score", tr.Status.String(), tr.Band, strconv.Itoa(tr.Score), "")
			if ex := tr.Explain; ex != nil {
				for _, st := range ex.Steps {
					t.Add(tr.Name, "-", "explain:"+st.Layer, st.Status.String(), Dash(st.Reason), "-", st.Message)
				}
				t.Add(tr.Name, "-", "explain", "-", "-", "-", ex.Conclusion)
			}
		}
		return t.WriteText(w, m)
	}
	var b strings.Builder
	for i, tr := range rep.Targets {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s  %s %s  score %s\n", Style(m.Color, Bold, tr.Name), tr.Type, tr.Address,
			Status(m.Color, fmt.Sprintf("%d %s", tr.Score, tr.Band)))
		if len(tr.Checks) == 0 {
			b.WriteString("  no rule applies to this target\n")
			continue
		}
		t := NewTable("status", "rule", "check", "value", "result")
		t.StatusColumn = 0
		for _, c := range tr.Checks {
			msg := c.Message
			if c.Reason != "" {
				msg = "[" + c.Reason + "] " + msg
			}
			t.Add(c.Status.String(), c.Rule, c.Check, mainValue(c), msg)
		}
		var tb strings.Builder
		if err := t.WriteText(&tb, m); err != nil {
			return err
		}
		for _, line := range strings.Split(strings.TrimRight(tb.String(), "\n"), "\n") {
			b.WriteString("  " + line + "\n")
		}
		for _, c := range tr.Checks {
			if c.Status != probe.OK && c.Remediation != "" {
				fmt.Fprintf(&b, "  %s %s: %s\n", Style(m.Color, Yellow, "->"), c.Rule, c.Remediation)
			}
		}
		if ex := tr.Explain; ex != nil {
			b.WriteString("  explain:\n")
			for _, st := range ex.Steps {
				fmt.Fprintf(&b, "    %-10s %s %s\n", st.Layer, Status(m.Color, st.Status.String()), st.Message)
			}
			fmt.Fprintf(&b, "    %s %s\n", Style(m.Color, Bold, "=>"), ex.Conclusion)
		}
	}
	fmt.Fprintf(&b, "\n%s  %d checks: %d OK, %d WARNING, %d CRITICAL, %d UNKNOWN in %s; score %s\n",
		Status(m.Color, rep.Status.String()), len(allChecks(rep)), rep.Counts["OK"], rep.Counts["WARNING"],
		rep.Counts["CRITICAL"], rep.Counts["UNKNOWN"], probe.FormatSeconds(rep.Duration),
		Status(m.Color, fmt.Sprintf("%d %s", rep.Score, rep.Band)))
	_, err := io.WriteString(w, b.String())
	return err
}

// Dash returns s, or "-" for an empty cell.
func Dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func allChecks(rep *diag.Report) []diag.CheckResult {
	var out []diag.CheckResult
	for _, t := range rep.Targets {
		out = append(out, t.Checks...)
	}
	return out
}

// JUnit: one testsuite per target, one testcase per check. CRITICAL and
// WARNING are failures (type says which), UNKNOWN is an error.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Timestamp string      `xml:"timestamp,attr"`
	Cases     []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

func diagJUnit(w io.Writer, rep *diag.Report) error {
	s := junitSuites{Name: "netops diag", Time: secs(rep.Duration)}
	for _, tr := range rep.Targets {
		suite := junitSuite{Name: tr.Name, Timestamp: rep.Started.UTC().Format("2006-01-02T15:04:05")}
		for _, c := range tr.Checks {
			// CI tools split classnames on dots into packages: keep the
			// target (an IP, hostname or URL) in one piece.
			jc := junitCase{Name: c.Rule + " (" + c.Check + ")", Classname: "netops.diag." + strings.ReplaceAll(tr.Name, ".", "_"), Time: secs(c.Duration)}
			text := c.Message
			if c.Remediation != "" {
				text += "\nremediation: " + c.Remediation
			}
			p := &junitProblem{Message: c.Message, Type: c.Status.String() + ":" + c.Reason, Text: text}
			switch c.Status {
			case probe.Critical, probe.Warning:
				jc.Failure = p
				suite.Failures++
			case probe.Unknown:
				jc.Error = p
				suite.Errors++
			default:
				jc.SystemOut = c.Message
			}
			suite.Tests++
			suite.Cases = append(suite.Cases, jc)
		}
		s.Tests += suite.Tests
		s.Failures += suite.Failures
		s.Errors += suite.Errors
		s.Suites = append(s.Suites, suite)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(s); err != nil {
		return fmt.Errorf("encode junit: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func secs(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) }

// TAP version 14: OK is "ok"; WARNING, CRITICAL and UNKNOWN are "not ok" with
// a YAML diagnostic block (an UNKNOWN check also makes netops exit non-zero).
func diagTAP(w io.Writer, rep *diag.Report) error {
	var b strings.Builder
	checks := allChecks(rep)
	fmt.Fprintf(&b, "TAP version 14\n1..%d\n", len(checks))
	n := 0
	for _, tr := range rep.Targets {
		for _, c := range tr.Checks {
			n++
			desc := tapEscape(tr.Name + " " + c.Rule + " (" + c.Check + ")")
			switch c.Status {
			case probe.OK:
				fmt.Fprintf(&b, "ok %d - %s\n", n, desc)
			default:
				fmt.Fprintf(&b, "not ok %d - %s\n", n, desc)
				fmt.Fprintf(&b, "  ---\n  status: %s\n  reason: %s\n  message: %s\n", c.Status, c.Reason, strconv.Quote(c.Message))
				if c.Remediation != "" {
					fmt.Fprintf(&b, "  remediation: %s\n", strconv.Quote(c.Remediation))
				}
				b.WriteString("  ...\n")
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func tapEscape(s string) string {
	return strings.NewReplacer("\\", "\\\\", "#", "\\#", "\n", " ").Replace(s)
}

// Nagios plugin output: "DIAG STATUS - summary|perfdata" then one line per
// non-OK check (long output).
func diagNagios(w io.Writer, rep *diag.Report) error {
	checks := allChecks(rep)
	var bad []string
	var long strings.Builder
	var perf []string
	for _, tr := range rep.Targets {
		for _, c := range tr.Checks {
			if c.Status != probe.OK {
				bad = append(bad, tr.Name+"/"+c.Rule+" "+c.Status.String())
				fmt.Fprintf(&long, "%s: %s/%s: %s\n", c.Status, tr.Name, c.Rule, strings.ReplaceAll(c.Message, "|", "/"))
			}
			for _, mt := range c.Metrics {
				perf = append(perf, nagiosPerf(tr.Name+"_"+c.Rule+"_"+mt.Name, mt))
			}
		}
		// Alert when the score drops below 75 (warning) or 60 (critical).
		perf = append(perf, nagiosLabel(tr.Name+"_score")+"="+strconv.Itoa(tr.Score)+";75:;60:;0;100")
	}
	summary := fmt.Sprintf("%d/%d checks OK, score %d %s", rep.Counts["OK"], len(checks), rep.Score, rep.Band)
	if len(bad) > 0 {
		summary += ": " + strings.Join(bad, ", ")
	}
	summary = strings.ReplaceAll(summary, "|", "/")
	_, err := fmt.Fprintf(w, "DIAG %s - %s|%s\n%s", rep.Status, summary, strings.Join(perf, " "), long.String())
	return err
}

func nagiosLabel(s string) string {
	if strings.ContainsAny(s, " '=") {
		return "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	return s
}

func nagiosPerf(label string, mt probe.Metric) string {
	uom := ""
	switch mt.Unit {
	case "s", "%", "c":
		uom = mt.Unit
	case "bytes":
		uom = "B"
	}
	return nagiosLabel(label) + "=" + strconv.FormatFloat(mt.Value, 'f', -1, 64) + uom
}

// Prometheus text exposition format (for node_exporter's textfile collector).
func diagPrometheus(w io.Writer, rep *diag.Report) error {
	var b strings.Builder
	b.WriteString("# HELP netops_diag_check_status Check status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.\n")
	b.WriteString("# TYPE netops_diag_check_status gauge\n")
	for _, tr := range rep.Targets {
		for _, c := range tr.Checks {
			fmt.Fprintf(&b, "netops_diag_check_status{%s} %d\n", promLabels("target", tr.Name, "rule", c.Rule, "check", c.Check, "reason", c.Reason), int(c.Status))
		}
	}
	b.WriteString("# HELP netops_diag_check_value A value measured by a check, in the unit of its label.\n")
	b.WriteString("# TYPE netops_diag_check_value gauge\n")
	for _, tr := range rep.Targets {
		for _, c := range tr.Checks {
			seen := map[string]bool{}
			for _, mt := range c.Metrics {
				if seen[mt.Name] {
					continue // one series per metric name: the first value wins
				}
				seen[mt.Name] = true
				fmt.Fprintf(&b, "netops_diag_check_value{%s} %s\n",
					promLabels("target", tr.Name, "rule", c.Rule, "check", c.Check, "metric", mt.Name, "unit", mt.Unit), promFloat(mt.Value))
			}
		}
	}
	b.WriteString("# HELP netops_diag_check_duration_seconds How long a check took, retries included.\n")
	b.WriteString("# TYPE netops_diag_check_duration_seconds gauge\n")
	for _, tr := range rep.Targets {
		for _, c := range tr.Checks {
			fmt.Fprintf(&b, "netops_diag_check_duration_seconds{%s} %s\n", promLabels("target", tr.Name, "rule", c.Rule, "check", c.Check), promFloat(c.Duration))
		}
	}
	b.WriteString("# HELP netops_diag_target_score Health score of a target, 0-100.\n")
	b.WriteString("# TYPE netops_diag_target_score gauge\n")
	for _, tr := range rep.Targets {
		fmt.Fprintf(&b, "netops_diag_target_score{%s} %d\n", promLabels("target", tr.Name, "type", tr.Type), tr.Score)
	}
	b.WriteString("# HELP netops_diag_score Health score of the whole run, 0-100.\n# TYPE netops_diag_score gauge\n")
	fmt.Fprintf(&b, "netops_diag_score %d\n", rep.Score)
	b.WriteString("# HELP netops_diag_last_run_timestamp_seconds When the run started (Unix time).\n# TYPE netops_diag_last_run_timestamp_seconds gauge\n")
	fmt.Fprintf(&b, "netops_diag_last_run_timestamp_seconds %s\n", promFloat(float64(rep.Started.UnixNano())/1e9))
	_, err := io.WriteString(w, b.String())
	return err
}

func promLabels(kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		v := strings.NewReplacer("\\", `\\`, "\"", `\"`, "\n", `\n`).Replace(kv[i+1])
		parts = append(parts, kv[i]+"=\""+v+"\"")
	}
	return strings.Join(parts, ",")
}

func promFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return "NaN"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
