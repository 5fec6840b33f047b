package diag

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/diag/probe"
)

func reportWith(st probe.Status) *Report {
	return &Report{Targets: []TargetReport{{Name: "web", Checks: []CheckResult{{Rule: "http", Check: "http", Status: st, Reason: "status"}}}}}
}

func TestMonitorFiresOnceAndDampsFlapping(t *testing.T) {
	m := &Monitor{AlertAfter: 3, RecoverAfter: 2}
	seq := []probe.Status{probe.OK, probe.Critical, probe.Critical, probe.OK, probe.Critical, probe.Critical,
		probe.Critical, probe.Critical, probe.OK, probe.Critical, probe.OK, probe.OK, probe.OK}
	var got []string
	at := time.Unix(0, 0)
	for i, s := range seq {
		for _, a := range m.Observe(reportWith(s), at.Add(time.Duration(i)*time.Minute)) {
			got = append(got, a.State+"@"+strconv.Itoa(i))
		}
	}
	// Fires at round 6 (third failure in a row), a single OK at 8 and a failure
	// at 9 do not resolve it, two OKs in a row (10, 11) do.
	want := "firing@6 resolved@11"
	if strings.Join(got, " ") != want {
		t.Errorf("alerts %v, want %s", got, want)
	}
	if m.Firing() != 0 {
		t.Errorf("firing = %d after resolve", m.Firing())
	}
}

func TestMonitorUnknownDoesNotFire(t *testing.T) {
	m := &Monitor{AlertAfter: 1}
	if a := m.Observe(reportWith(probe.Unknown), time.Now()); len(a) != 0 {
		t.Errorf("UNKNOWN raised %v", a)
	}
}

func TestRunAlertExec(t *testing.T) {
	out := filepath.Join(t.TempDir(), "alert.json")
	// tee is a real program that copies stdin to a file: no shell involved.
	if _, err := os.Stat("/usr/bin/tee"); err != nil {
		t.Skip("tee not installed")
	}
	a := Alert{State: "firing", Target: "web; rm -rf /", Rule: "http", Status: probe.Critical, Message: "503"}
	if err := RunAlertExec(context.Background(), []string{"/usr/bin/tee", out}, nil, a); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(data), `"target":"web; rm -rf /"`) || !strings.Contains(string(data), `"state":"firing"`) {
		t.Errorf("alert JSON = %q, %v", data, err)
	}
	if err := RunAlertExec(context.Background(), []string{"/bin/false"}, nil, a); err == nil {
		t.Error("a failing alert command must be an error")
	}
}
