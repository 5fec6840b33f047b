package probe

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/config"
)

// The test binary doubles as the programs Exec runs: a Nagios plugin, a
// program that prints its argv and environment, a sleeper, a process that
// spawns a grandchild. execHelper returns the argv that runs it in mode.
const execHelperMode = "netops-exec-helper"

func execHelper(mode string, args ...string) []string {
	return append([]string{os.Args[0], "-test.run=^TestExecHelperProcess$", "--", execHelperMode, mode}, args...)
}

// TestExecHelperProcess is not a test: it is the helper program, active only
// when the binary is run by execHelper.
func TestExecHelperProcess(t *testing.T) {
	args := flag.Args()
	if len(args) < 2 || args[0] != execHelperMode {
		return
	}
	mode, args := args[1], args[2:]
	code := 0
	switch mode {
	case "plugin": // plugin CODE STDOUT [STDERR]
		code, _ = strconv.Atoi(args[0])
		fmt.Fprint(os.Stdout, args[1])
		if len(args) > 2 {
			fmt.Fprint(os.Stderr, args[2])
		}
	case "argv": // print the arguments and the NETOPS_TARGET_* env as JSON
		env := map[string]string{}
		for _, kv := range os.Environ() {
			if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "NETOPS_TARGET_") {
				env[k] = v
			}
		}
		b, _ := json.Marshal(map[string]any{"args": args, "env": env})
		fmt.Fprintf(os.Stdout, "%s\n", b)
	case "sleep":
		time.Sleep(time.Minute)
	case "spawn": // spawn PIDFILE EXIT: start a sleeping grandchild in our group, then sleep or exit
		gc := exec.Command(os.Args[0], execHelper("sleep")[1:]...)
		gc.Stdout = os.Stdout // holds the pipe, like a forgotten background job
		if err := gc.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(99)
		}
		if err := os.WriteFile(args[0], []byte(strconv.Itoa(gc.Process.Pid)), 0o600); err != nil {
			os.Exit(98)
		}
		if args[1] == "exit" {
			fmt.Fprintln(os.Stdout, "OK - started a background job")
			syscall.Exit(0)
		}
		time.Sleep(time.Minute)
	case "flood": // write 1 MiB to stdout
		line := strings.Repeat("x", 1023) + "\n"
		for range 1024 {
			fmt.Fprint(os.Stdout, line)
		}
	case "traceroute": // print the Traceroute result for 127.0.0.1 and a raw ICMP Trace's error as JSON
		res := Traceroute(context.Background(), loopbackTarget, traceRule())
		_, err := Trace(context.Background(), netip.MustParseAddr("127.0.0.1"), TraceOptions{Mode: TraceICMP})
		b, _ := json.Marshal(map[string]any{"result": res, "icmp_reason": Classify(err), "icmp_error": fmt.Sprint(err)})
		fmt.Fprintf(os.Stdout, "%s\n", b)
	case "signal":
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		time.Sleep(time.Minute)
	}
	// syscall.Exit skips the race detector's exit delay (1s on exit status 0).
	syscall.Exit(code)
}

func execRule(argv []string) config.Rule {
	return config.Rule{Name: "t", Check: config.CheckExec, Command: argv, Timeout: config.Duration(20 * time.Second)}
}

func TestExecNagiosExitCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code   int
		status Status
		reason string
	}{
		{0, OK, ""},
		{1, Warning, ReasonExit},
		{2, Critical, ReasonExit},
		{3, Unknown, ReasonExit},
		{4, Critical, ReasonExit},
		{127, Critical, ReasonExit},
	} {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			t.Parallel()
			res := Exec(t.Context(), loopbackTarget, execRule(execHelper("plugin", strconv.Itoa(tc.code), "STATUS - text here|time=0.5s;1;2")))
			if res.Status != tc.status || res.Reason != tc.reason {
				t.Fatalf("exit %d: got %v/%q (%s), want %v/%q", tc.code, res.Status, res.Reason, res.Message, tc.status, tc.reason)
			}
			want := "STATUS - text here"
			if tc.code > 3 {
				want += " (exit status " + strconv.Itoa(tc.code) + ")"
			}
			if res.Message != want {
				t.Errorf("message %q, want %q", res.Message, want)
			}
			if d := res.Details.(ExecDetails); d.ExitCode != tc.code {
				t.Errorf("details exit code %d", d.ExitCode)
			}
		})
	}
}

func TestExecPerfdataMetrics(t *testing.T) {
	t.Parallel()
	out := "OK - fine|time=0.5s;1;2 size=10KB 'disk used'=80%;90;95;0;100\nlong text line\nmore | lat=250ms;;;0 hits=42c\n"
	res := Exec(t.Context(), loopbackTarget, execRule(execHelper("plugin", "0", out)))
	if res.Status != OK || res.Message != "OK - fine" {
		t.Fatalf("got %v %q", res.Status, res.Message)
	}
	want := []Metric{
		{Name: "time", Value: 0.5, Unit: "s"},
		{Name: "size", Value: 10240, Unit: "bytes"},
		{Name: "disk used", Value: 80, Unit: "%"},
		{Name: "lat", Value: 0.25, Unit: "s"},
		{Name: "hits", Value: 42, Unit: "c"},
	}
	if len(res.Metrics) != len(want)+1 {
		t.Fatalf("metrics %+v", res.Metrics)
	}
	for i, w := range want {
		if g := res.Metrics[i]; g.Name != w.Name || g.Unit != w.Unit || math.Abs(g.Value-w.Value) > 1e-9 {
			t.Errorf("metric %d = %+v, want %+v", i, g, w)
		}
	}
	if d, ok := res.Metric(MetricDuration); !ok || d.Value <= 0 || d.Unit != "s" {
		t.Errorf("duration metric %+v %v", d, ok)
	}
	d := res.Details.(ExecDetails)
	if p := d.Perfdata[2]; p.Warn != "90" || p.Crit != "95" || p.Min != "0" || p.Max != "100" || p.UOM != "%" {
		t.Errorf("perfdata thresholds %+v", p)
	}
}

func TestParseNagiosPerfdata(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []NagiosPerf
	}{
		{"", nil},
		{"a=1", []NagiosPerf{{Label: "a", Value: 1}}},
		{"rta=0.051ms;200.000;500.000;0; pl=0%;40;80;;", []NagiosPerf{
			{Label: "rta", Value: 0.051e-3, Unit: "s", UOM: "ms", Warn: "200.000", Crit: "500.000", Min: "0"},
			{Label: "pl", Value: 0, Unit: "%", UOM: "%", Warn: "40", Crit: "80"},
		}},
		{"'it''s a label'=3us 'x y'=1.5e3B", []NagiosPerf{
			{Label: "it's a label", Value: 3e-6, Unit: "s", UOM: "us"},
			{Label: "x y", Value: 1500, Unit: "bytes", UOM: "B"},
		}},
		{"/=2643MB;5948;5958;0;5968", []NagiosPerf{
			{Label: "/", Value: 2643 * 1024 * 1024, Unit: "bytes", UOM: "MB", Warn: "5948", Crit: "5958", Min: "0", Max: "5968"},
		}},
		{"u=U;1;2 junk =5 ok=-2.5 g=1GB t=2,5s", []NagiosPerf{
			{Label: "ok", Value: -2.5},
			{Label: "g", Value: 1 << 30, Unit: "bytes", UOM: "GB"},
			{Label: "t", Value: 2.5, Unit: "s", UOM: "s"},
		}},
		{"'unterminated=1", nil},
		{"odd=3furlongs", []NagiosPerf{{Label: "odd", Value: 3, Unit: "furlongs", UOM: "furlongs"}}},
	} {
		got := ParseNagiosPerfdata(tc.in)
		if len(got) != len(tc.want) {
			t.Errorf("%q: got %+v, want %+v", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			g, w := got[i], tc.want[i]
			if math.Abs(g.Value-w.Value) > 1e-12*math.Max(1, math.Abs(w.Value)) {
				t.Errorf("%q[%d]: value %v, want %v", tc.in, i, g.Value, w.Value)
			}
			g.Value = w.Value
			if g != w {
				t.Errorf("%q[%d]: got %+v, want %+v", tc.in, i, g, w)
			}
		}
	}
}

func FuzzParseNagiosPerfdata(f *testing.F) {
	for _, s := range []string{"a=1", "'a b'=1ms;2;3;4;5", "x=U", "''=", "'a''", "=;;;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range ParseNagiosPerfdata(s) {
			if p.Label == "" {
				t.Fatalf("%q: empty label in %+v", s, p)
			}
		}
	})
}

func TestExecPlaceholdersAreOneArgument(t *testing.T) {
	t.Parallel()
	evil := Target{Name: "a;rm -rf /;$(x)", Type: config.TargetService, Address: "http://[::1]:8080/`id`?q=$(x)&r=1|y"}
	argv := execHelper("argv", "{name}", "--host={host}", "{address}", "{host}{name}", "{unknown}", "'{name}'")
	res := Exec(t.Context(), evil, execRule(argv))
	if res.Status != OK {
		t.Fatalf("got %v %s: %s", res.Status, res.Reason, res.Message)
	}
	var got struct {
		Args []string          `json:"args"`
		Env  map[string]string `json:"env"`
	}
	if err := json.Unmarshal([]byte(res.Details.(ExecDetails).Output), &got); err != nil {
		t.Fatalf("helper output %q: %v", res.Details.(ExecDetails).Output, err)
	}
	want := []string{evil.Name, "--host=::1", evil.Address, "::1" + evil.Name, "{unknown}", "'" + evil.Name + "'"}
	if strings.Join(got.Args, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("args %q, want %q", got.Args, want)
	}
	wantEnv := map[string]string{"NETOPS_TARGET_NAME": evil.Name, "NETOPS_TARGET_ADDRESS": evil.Address,
		"NETOPS_TARGET_HOST": "::1", "NETOPS_TARGET_TYPE": "service"}
	for k, v := range wantEnv {
		if got.Env[k] != v {
			t.Errorf("env %s=%q, want %q", k, got.Env[k], v)
		}
	}
	// The program name is never substituted: a target cannot choose what runs.
	if a := ExecArgv([]string{"{address}", "{address}"}, Target{Address: "/bin/evil"}); a[0] != "{address}" || a[1] != "/bin/evil" {
		t.Errorf("ExecArgv = %q", a)
	}
}

func TestExecCannotStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notExec := filepath.Join(dir, "plugin")
	if err := os.WriteFile(notExec, []byte("#!/bin/true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, argv := range map[string][]string{
		"missing":        {filepath.Join(dir, "nope")},
		"not-in-path":    {"netops-no-such-plugin-xyz"},
		"not-executable": {notExec},
		"directory":      {dir},
		"empty":          {" "},
	} {
		res := Exec(t.Context(), loopbackTarget, execRule(argv))
		if res.Status != Unknown || res.Reason != ReasonError {
			t.Errorf("%s: got %v/%q %s, want UNKNOWN/error", name, res.Status, res.Reason, res.Message)
		}
	}
	res := Exec(t.Context(), loopbackTarget, execRule(nil))
	if res.Status != Unknown || !strings.Contains(res.Message, "command") {
		t.Errorf("no command: %v %s", res.Status, res.Message)
	}
}

func TestExecExpect(t *testing.T) {
	t.Parallel()
	r := execRule(execHelper("plugin", "0", "HTTP OK: 200|"))
	r.Expect = `^HTTP OK`
	if res := Exec(t.Context(), loopbackTarget, r); res.Status != OK {
		t.Errorf("match: %v %s", res.Status, res.Message)
	}
	r.Expect = `^SSH-`
	if res := Exec(t.Context(), loopbackTarget, r); res.Status != Critical || res.Reason != ReasonMismatch {
		t.Errorf("mismatch: %v %q %s", res.Status, res.Reason, res.Message)
	}
	// an UNKNOWN plugin stays UNKNOWN: its output is an error message
	r = execRule(execHelper("plugin", "3", "UNKNOWN - cannot read /proc"))
	r.Expect = `^OK`
	if res := Exec(t.Context(), loopbackTarget, r); res.Status != Unknown || res.Reason != ReasonExit {
		t.Errorf("unknown plugin: %v %q %s", res.Status, res.Reason, res.Message)
	}
	// stderr is used when stdout is empty
	r = execRule(execHelper("plugin", "0", "", "only on stderr\n"))
	r.Expect = `stderr$`
	res := Exec(t.Context(), loopbackTarget, r)
	if res.Status != OK || res.Message != "only on stderr" {
		t.Errorf("stderr: %v %q", res.Status, res.Message)
	}
	// a bad regexp cannot run
	r.Expect = `(`
	if res := Exec(t.Context(), loopbackTarget, r); res.Status != Unknown {
		t.Errorf("bad regexp: %v", res.Status)
	}
}

func TestExecNoOutputAndSignal(t *testing.T) {
	t.Parallel()
	res := Exec(t.Context(), loopbackTarget, execRule(execHelper("plugin", "2", "")))
	if res.Status != Critical || res.Message != "exit status 2, no output" {
		t.Errorf("no output: %v %q", res.Status, res.Message)
	}
	res = Exec(t.Context(), loopbackTarget, execRule(execHelper("signal")))
	if res.Status != Critical || res.Reason != ReasonExit || !strings.Contains(res.Message, "signal") {
		t.Errorf("signal: %v %q %q", res.Status, res.Reason, res.Message)
	}
}

func TestExecOutputCapped(t *testing.T) {
	t.Parallel()
	res := Exec(t.Context(), loopbackTarget, execRule(execHelper("flood")))
	d := res.Details.(ExecDetails)
	if res.Status != OK || !d.Truncated || len(d.Output) != execDetailCap {
		t.Errorf("got %v truncated=%v output=%d", res.Status, d.Truncated, len(d.Output))
	}
}

// processGone reports whether pid no longer runs (gone or a zombie).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

func waitGone(t *testing.T, pidFile string) {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("helper did not write its grandchild pid: %v", err)
	}
	pid, _ := strconv.Atoi(string(b))
	deadline := time.Now().Add(5 * time.Second)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("grandchild %d outlived the check", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExecTimeoutKillsProcessGroup(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	r := execRule(execHelper("spawn", pidFile, "sleep"))
	r.Timeout = config.Duration(time.Second)
	start := time.Now()
	res := Exec(t.Context(), loopbackTarget, r)
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Exec took %v with a 1s timeout", el)
	}
	if res.Status != Critical || res.Reason != ReasonTimeout {
		t.Fatalf("got %v/%q %s, want CRITICAL/timeout", res.Status, res.Reason, res.Message)
	}
	waitGone(t, pidFile)
}

func TestExecContextCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	res := Exec(ctx, loopbackTarget, execRule(execHelper("sleep")))
	if res.Status != Critical || res.Reason != ReasonTimeout {
		t.Fatalf("got %v/%q %s", res.Status, res.Reason, res.Message)
	}
}

func TestExecLeftoverProcessesKilled(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	start := time.Now()
	res := Exec(t.Context(), loopbackTarget, execRule(execHelper("spawn", pidFile, "exit")))
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("Exec waited %v for a background job holding stdout", el)
	}
	if res.Status != OK || res.Message != "OK - started a background job" {
		t.Fatalf("got %v %q", res.Status, res.Message)
	}
	waitGone(t, pidFile)
}
