package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/netops-dev/netops/internal/config"
)

// Exec limits.
const (
	// ExecOutputCap is how much of stdout and of stderr Exec keeps (each); the
	// rest is read and discarded so the program never blocks on a full pipe.
	ExecOutputCap = 64 << 10
	// execDetailCap is how much of the output Exec copies into ExecDetails.
	execDetailCap = 4 << 10
	// execDrain bounds how long Exec keeps reading the pipes after the program
	// exited, for a descendant that escaped the process group and holds them.
	execDrain = 200 * time.Millisecond
)

// MetricDuration is the wall time of an exec check, in seconds.
const MetricDuration = "duration"

// Placeholders an exec command may contain. Each is replaced textually inside
// its own argv element; the result stays one argument and never meets a shell.
const (
	PlaceholderAddress = "{address}"
	PlaceholderHost    = "{host}"
	PlaceholderName    = "{name}"
)

// ExecDetails is the Details of an exec result.
type ExecDetails struct {
	Argv     []string `json:"argv"`
	ExitCode int      `json:"exit_code"`        // -1 when killed by a signal
	Signal   string   `json:"signal,omitempty"` // e.g. "killed" when a signal ended it
	// Output is the start of stdout (of stderr when stdout is empty), at most
	// 4 KiB; Truncated says the program wrote more than ExecOutputCap.
	Output    string       `json:"output,omitempty"`
	Stderr    string       `json:"stderr,omitempty"`
	Truncated bool         `json:"truncated,omitempty"`
	Perfdata  []NagiosPerf `json:"perfdata,omitempty"`
}

// NagiosPerf is one Nagios plugin performance value
// ('label'=value[UOM];[warn];[crit];[min];[max]). Value is converted to the
// base Unit (seconds, bytes, %, "c" for a counter, "" for a plain number);
// Warn, Crit, Min and Max are kept as written, in the plugin's UOM.
type NagiosPerf struct {
	Label string  `json:"label"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit,omitempty"`
	UOM   string  `json:"uom,omitempty"`
	Warn  string  `json:"warn,omitempty"`
	Crit  string  `json:"crit,omitempty"`
	Min   string  `json:"min,omitempty"`
	Max   string  `json:"max,omitempty"`
}

// Exec runs rule.Command (an argv list, never through a shell) against t and
// maps the outcome like a Nagios plugin: exit 0 OK, 1 WARNING, 2 CRITICAL,
// 3 UNKNOWN (reason exit), any other code or a signal CRITICAL (reason exit);
// a program that cannot be started is UNKNOWN (reason error). When ctx (or
// rule.Timeout) runs out, the program's whole process group is killed and the
// result is CRITICAL (reason timeout). Processes the program leaves behind in
// its group are killed when it exits.
//
// Placeholders {address}, {host} and {name} in the arguments (not in the
// program name) are replaced by the target's address, host and name; the
// environment also gets NETOPS_TARGET_NAME, NETOPS_TARGET_ADDRESS,
// NETOPS_TARGET_HOST and NETOPS_TARGET_TYPE.
//
// The message is the plugin's first output line up to '|'; the performance
// data after '|' becomes metrics (in base units), followed by "duration"
// (seconds). rule.Expect, when set, must match stdout (stderr when stdout is
// empty; trailing newlines removed) of an OK or WARNING run, else the result
// is CRITICAL (reason mismatch).
func Exec(ctx context.Context, t Target, rule config.Rule) Result {
	if len(rule.Command) == 0 || strings.TrimSpace(rule.Command[0]) == "" {
		return Failf(Unknown, ReasonError,
			"exec: no command to run; set command to an argv list like [/usr/lib/nagios/plugins/check_ping, -H, \"{address}\"]")
	}
	var expect *regexp.Regexp
	if rule.Expect != "" {
		re, err := regexp.Compile(rule.Expect)
		if err != nil {
			return Failf(Unknown, ReasonError, "exec: bad expect regexp %q: %v", rule.Expect, err)
		}
		expect = re
	}
	if rule.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rule.Timeout.D())
		defer cancel()
	}

	argv := ExecArgv(rule.Command, t)
	run, err := execRun(ctx, argv, append(os.Environ(), ExecEnv(t)...))
	if err != nil {
		reason := ReasonError
		if ctx.Err() != nil {
			reason = ReasonTimeout
		}
		return Failf(Unknown, reason, "cannot run %s: %v", argv[0], err)
	}

	text, perfText := nagiosSplit(run.stdout)
	if text == "" && len(bytes.TrimSpace(run.stdout)) == 0 {
		text, perfText = nagiosSplit(run.stderr)
	}
	perf := ParseNagiosPerfdata(perfText)

	d := ExecDetails{Argv: argv, ExitCode: run.exitCode, Signal: run.signal,
		Truncated: run.truncated, Perfdata: perf}
	subject := run.stdout
	if len(bytes.TrimSpace(subject)) == 0 {
		subject = run.stderr
	} else {
		d.Stderr = capString(run.stderr, execDetailCap)
	}
	d.Output = capString(subject, execDetailCap)

	res := Result{Details: d}
	haveDuration := false
	for _, p := range perf {
		res.AddMetric(p.Label, p.Value, p.Unit)
		haveDuration = haveDuration || p.Label == MetricDuration
	}
	if !haveDuration {
		res.AddMetric(MetricDuration, Seconds(run.elapsed), "s")
	}

	switch {
	case run.timedOut:
		why := "timed out"
		if errors.Is(ctx.Err(), context.Canceled) {
			why = "cancelled"
		}
		res.Status, res.Reason = Critical, ReasonTimeout
		res.Message = fmt.Sprintf("%s after %s; process group killed", why, FormatSeconds(Seconds(run.elapsed)))
		if text != "" {
			res.Message += ": " + text
		}
		return res
	case run.signal != "":
		res.Status, res.Reason = Critical, ReasonExit
		res.Message = "killed by signal " + run.signal
		if text != "" {
			res.Message += ": " + text
		}
		return res
	}

	res.Status = ExecStatus(run.exitCode)
	if res.Status != OK {
		res.Reason = ReasonExit
	}
	switch {
	case text == "":
		res.Message = "exit status " + strconv.Itoa(run.exitCode) + ", no output"
	case run.exitCode < 0 || run.exitCode > 3:
		res.Message = text + " (exit status " + strconv.Itoa(run.exitCode) + ")"
	default:
		res.Message = text
	}
	// An UNKNOWN plugin could not check; its output is an error, not a
	// mismatch. A CRITICAL one already failed.
	if expect != nil && (res.Status == OK || res.Status == Warning) && !expect.Match(bytes.TrimRight(subject, "\r\n")) {
		res.Status, res.Reason = Critical, ReasonMismatch
		res.Message = fmt.Sprintf("output does not match %q: %s", rule.Expect, res.Message)
	}
	return res
}

// ExecStatus maps a Nagios plugin exit code to a status: 0 OK, 1 WARNING,
// 2 CRITICAL, 3 UNKNOWN, anything else CRITICAL.
func ExecStatus(code int) Status {
	switch code {
	case 0:
		return OK
	case 1:
		return Warning
	case 3:
		return Unknown
	}
	return Critical
}

// ExecArgv returns command with the placeholders in its arguments replaced by
// t's address, host and name. The program name (command[0]) is left as
// written, so a target can never choose what runs.
func ExecArgv(command []string, t Target) []string {
	if len(command) == 0 {
		return nil
	}
	r := strings.NewReplacer(PlaceholderAddress, t.Address, PlaceholderHost, Host(t.Address), PlaceholderName, t.Name)
	argv := make([]string, len(command))
	argv[0] = command[0]
	for i, a := range command[1:] {
		argv[i+1] = r.Replace(a)
	}
	return argv
}

// ExecEnv returns the NETOPS_TARGET_* variables Exec adds to the program's
// environment.
func ExecEnv(t Target) []string {
	return []string{
		"NETOPS_TARGET_NAME=" + t.Name,
		"NETOPS_TARGET_ADDRESS=" + t.Address,
		"NETOPS_TARGET_HOST=" + Host(t.Address),
		"NETOPS_TARGET_TYPE=" + t.Type,
	}
}

// execOutcome is what running a program produced.
type execOutcome struct {
	stdout, stderr []byte
	truncated      bool
	exitCode       int
	signal         string
	elapsed        time.Duration
	timedOut       bool
}

// execRun starts argv with env in its own process group and waits for it or
// for ctx. It returns an error only when the program could not be started.
func execRun(ctx context.Context, argv, env []string) (execOutcome, error) {
	var out execOutcome
	if err := ctx.Err(); err != nil {
		return out, fmt.Errorf("not started: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return out, fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return out, fmt.Errorf("stderr pipe: %w", err)
	}
	defer outR.Close()
	defer errR.Close()

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = outW, errW // *os.File: no copying goroutines in os/exec
	cmd.SysProcAttr = execProcAttr()
	start := time.Now()
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		return out, err
	}

	var stdout, stderr cappedBuffer
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = io.Copy(&stdout, outR) })
	wg.Go(func() { _, _ = io.Copy(&stderr, errR) })

	type exit struct {
		state *os.ProcessState
		err   error
	}
	exited := make(chan exit, 1)
	go func() {
		st, err := execAwaitExit(cmd.Process)
		exited <- exit{st, err}
	}()
	var ex exit
	select {
	case ex = <-exited:
	case <-ctx.Done():
		out.timedOut = true
		execKillGroup(cmd.Process)
		ex = <-exited
	}
	out.elapsed = time.Since(start)
	// Whatever the program left running in its group goes too; the leader is
	// not reaped yet, so its process group id cannot have been reused.
	execKillGroup(cmd.Process)
	state, waitErr := ex.state, ex.err
	if state == nil {
		state, waitErr = cmd.Process.Wait()
	}

	// A descendant that left the group may still hold the pipes open.
	drain := time.Now().Add(execDrain)
	_ = outR.SetReadDeadline(drain)
	_ = errR.SetReadDeadline(drain)
	wg.Wait()

	out.stdout, out.stderr = stdout.buf.Bytes(), stderr.buf.Bytes()
	out.truncated = stdout.dropped > 0 || stderr.dropped > 0
	out.exitCode = -1
	if waitErr != nil || state == nil {
		out.signal = "unknown (wait failed)"
		return out, nil
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		out.signal = ws.Signal().String()
		return out, nil
	}
	out.exitCode = state.ExitCode()
	return out, nil
}

// cappedBuffer keeps the first ExecOutputCap bytes written and counts the rest.
type cappedBuffer struct {
	buf     bytes.Buffer
	dropped int
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	room := ExecOutputCap - c.buf.Len()
	if room >= len(p) {
		c.buf.Write(p)
		return len(p), nil
	}
	if room > 0 {
		c.buf.Write(p[:room])
	}
	c.dropped += len(p) - max(room, 0)
	return len(p), nil
}

func capString(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// nagiosSplit returns the first output line up to '|' (trimmed) and the
// performance data: what follows '|' on the first line plus, in the long
// output, everything after the first '|' there.
func nagiosSplit(out []byte) (text, perf string) {
	s := strings.ReplaceAll(string(out), "\r\n", "\n")
	first, rest, _ := strings.Cut(s, "\n")
	text, perf, _ = strings.Cut(first, "|")
	if _, more, ok := strings.Cut(rest, "|"); ok {
		perf += " " + more
	}
	return strings.TrimSpace(text), perf
}

// ParseNagiosPerfdata parses Nagios plugin performance data
// ("'label'=value[UOM];[warn];[crit];[min];[max] ...", labels quoted when they
// contain spaces, a doubled single quote for a quote inside). Values are
// converted to base units: s, ms, us, ns -> seconds; B, KB, MB, GB, TB (and
// KiB...) -> bytes (1024 based); % stays percent; c is a counter. Malformed
// items and the undetermined value "U" are skipped.
func ParseNagiosPerfdata(s string) []NagiosPerf {
	var out []NagiosPerf
	for i := 0; i < len(s); {
		for i < len(s) && isPerfSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			break
		}
		var label string
		if s[i] == '\'' {
			var b strings.Builder
			j := i + 1
			for j < len(s) {
				if s[j] == '\'' {
					if j+1 < len(s) && s[j+1] == '\'' {
						b.WriteByte('\'')
						j += 2
						continue
					}
					break
				}
				b.WriteByte(s[j])
				j++
			}
			label, i = b.String(), j+1
		} else {
			j := i
			for j < len(s) && s[j] != '=' && !isPerfSpace(s[j]) {
				j++
			}
			label, i = s[i:j], j
		}
		if i >= len(s) || s[i] != '=' {
			for i < len(s) && !isPerfSpace(s[i]) { // skip the malformed item
				i++
			}
			continue
		}
		j := i + 1
		for j < len(s) && !isPerfSpace(s[j]) {
			j++
		}
		item := s[i+1 : j]
		i = j
		if p, ok := parsePerfValue(label, item); ok {
			out = append(out, p)
		}
	}
	return out
}

func isPerfSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func parsePerfValue(label, item string) (NagiosPerf, bool) {
	if label == "" {
		return NagiosPerf{}, false
	}
	fields := strings.Split(item, ";")
	v := fields[0]
	n := 0
	for n < len(v) && strings.IndexByte("0123456789.,+-", v[n]) >= 0 {
		n++
	}
	// An exponent: 1.5e-3s.
	if n > 0 && n < len(v) && (v[n] == 'e' || v[n] == 'E') {
		k := n + 1
		if k < len(v) && (v[k] == '+' || v[k] == '-') {
			k++
		}
		if k < len(v) && v[k] >= '0' && v[k] <= '9' {
			for k < len(v) && v[k] >= '0' && v[k] <= '9' {
				k++
			}
			n = k
		}
	}
	num, err := strconv.ParseFloat(strings.ReplaceAll(v[:n], ",", "."), 64)
	if err != nil {
		return NagiosPerf{}, false
	}
	uom := v[n:]
	factor, unit := perfUnit(uom)
	p := NagiosPerf{Label: label, Value: num * factor, Unit: unit, UOM: uom}
	for k, dst := range []*string{&p.Warn, &p.Crit, &p.Min, &p.Max} {
		if k+1 < len(fields) {
			*dst = fields[k+1]
		}
	}
	return p, true
}

// perfUnit returns the factor to the base unit and the base unit's name.
func perfUnit(uom string) (float64, string) {
	const ki = 1024.0
	switch uom {
	case "":
		return 1, ""
	case "s":
		return 1, "s"
	case "ms":
		return 1e-3, "s"
	case "us", "µs":
		return 1e-6, "s"
	case "ns":
		return 1e-9, "s"
	case "%":
		return 1, "%"
	case "c":
		return 1, "c"
	case "B":
		return 1, "bytes"
	case "KB", "kB", "KiB":
		return ki, "bytes"
	case "MB", "MiB":
		return ki * ki, "bytes"
	case "GB", "GiB":
		return ki * ki * ki, "bytes"
	case "TB", "TiB":
		return ki * ki * ki * ki, "bytes"
	}
	return 1, uom
}
