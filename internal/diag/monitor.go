package diag

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/netops-dev/netops/internal/diag/probe"
)

// Alert is raised when a check has failed AlertAfter rounds in a row
// ("firing"), and once more when it has passed RecoverAfter rounds in a row
// after that ("resolved").
type Alert struct {
	State       string         `json:"state"` // "firing" or "resolved"
	Target      string         `json:"target"`
	Rule        string         `json:"rule"`
	Check       string         `json:"check"`
	Status      probe.Status   `json:"status"`
	Reason      string         `json:"reason,omitempty"`
	Message     string         `json:"message"`
	Remediation string         `json:"remediation,omitempty"`
	Rounds      int            `json:"rounds"` // consecutive rounds in the new state
	Since       time.Time      `json:"since"`  // when the streak started
	At          time.Time      `json:"at"`
	Metrics     []probe.Metric `json:"metrics,omitempty"`
}

type checkState struct {
	firing    bool
	failRun   int
	okRun     int
	streakAt  time.Time
	lastState probe.Status
}

// Monitor turns successive reports into alerts. Requiring several rounds in a
// row before firing and before resolving damps a flapping check: it alerts
// once, not every other round.
type Monitor struct {
	AlertAfter   int // failing rounds in a row before an alert fires (default 3)
	RecoverAfter int // passing rounds in a row before it resolves (default 2)
	states       map[string]*checkState
}

// Observe feeds one round's report and returns the alerts it raises.
func (m *Monitor) Observe(rep *Report, at time.Time) []Alert {
	if m.states == nil {
		m.states = map[string]*checkState{}
	}
	alertAfter, recoverAfter := max(m.AlertAfter, 1), max(m.RecoverAfter, 1)
	if m.AlertAfter == 0 {
		alertAfter = 3
	}
	if m.RecoverAfter == 0 {
		recoverAfter = 2
	}
	var alerts []Alert
	for _, t := range rep.Targets {
		for _, c := range t.Checks {
			key := t.Name + "\x00" + c.Rule
			st := m.states[key]
			if st == nil {
				st = &checkState{}
				m.states[key] = st
			}
			if c.Status == probe.Unknown {
				// A round where the check could not run says nothing about
				// the target: it neither extends nor breaks a streak.
				continue
			}
			failing := c.Status == probe.Critical || c.Status == probe.Warning
			if failing {
				if st.failRun == 0 {
					st.streakAt = at
				}
				st.failRun++
				st.okRun = 0
			} else {
				if st.okRun == 0 {
					st.streakAt = at
				}
				st.okRun++
				st.failRun = 0
			}
			a := Alert{Target: t.Name, Rule: c.Rule, Check: c.Check, Status: c.Status, Reason: c.Reason,
				Message: c.Message, Remediation: c.Remediation, Since: st.streakAt, At: at, Metrics: c.Metrics}
			switch {
			case !st.firing && failing && st.failRun >= alertAfter:
				st.firing = true
				a.State, a.Rounds = "firing", st.failRun
				alerts = append(alerts, a)
			case st.firing && !failing && st.okRun >= recoverAfter:
				st.firing = false
				a.State, a.Rounds = "resolved", st.okRun
				alerts = append(alerts, a)
			}
		}
	}
	return alerts
}

// Firing returns how many checks are currently alerting.
func (m *Monitor) Firing() int {
	n := 0
	for _, st := range m.states {
		if st.firing {
			n++
		}
	}
	return n
}

// RunAlertExec runs argv (never through a shell) with the alert as JSON on
// stdin and NETOPS_ALERT_* variables in its environment, within ctx.
func RunAlertExec(ctx context.Context, argv []string, env []string, a Alert) error {
	if len(argv) == 0 {
		return errors.New("alert command is empty")
	}
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode alert: %w", err)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// A program that leaves a child holding its stderr must not hold the
	// monitor past the deadline: close the pipes shortly after it is killed.
	cmd.WaitDelay = time.Second
	cmd.Stdin = bytes.NewReader(append(data, '\n'))
	cmd.Env = append(env,
		"NETOPS_ALERT_STATE="+a.State, "NETOPS_ALERT_TARGET="+a.Target, "NETOPS_ALERT_RULE="+a.Rule,
		"NETOPS_ALERT_STATUS="+a.Status.String(), "NETOPS_ALERT_REASON="+a.Reason,
		"NETOPS_ALERT_MESSAGE="+strings.ReplaceAll(a.Message, "\n", " "))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		if msg != "" {
			return fmt.Errorf("alert command %s: %w: %s", argv[0], err, msg)
		}
		return fmt.Errorf("alert command %s: %w", argv[0], err)
	}
	return nil
}
