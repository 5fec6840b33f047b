package diag

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/netops-dev/netops/internal/diag/probe"
)

func TestDoctor(t *testing.T) {
	proc, etc := t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(proc, "sys/net/ipv4"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(proc, "sys/net/ipv4/ping_group_range"), "1\t0\n") // the kernel's "nobody" default
	write(filepath.Join(etc, "resolv.conf"), "# x\nnameserver 127.0.0.53\n")
	env := DoctorEnv{ProcRoot: proc, EtcRoot: etc, Euid: 1000, Egid: 1000,
		RawSocketOK: func() error { return syscall.EPERM },
		ListenV6:    func(context.Context) error { return errors.New("no v6") },
		LookPath:    func(string) (string, error) { return "", errors.New("nope") }}
	got := map[string]Finding{}
	for _, f := range Doctor(context.Background(), env) {
		got[f.Item] = f
	}
	if f := got["icmp"]; f.Status != probe.Critical || !strings.Contains(f.Fix, "ping_group_range") {
		t.Errorf("icmp finding: %+v", f)
	}
	if f := got["icmp-raw"]; f.Status != probe.Warning || !strings.Contains(f.Fix, "cap_net_raw") {
		t.Errorf("raw finding: %+v", f)
	}
	if f := got["ipv6"]; f.Status != probe.Warning {
		t.Errorf("ipv6 finding: %+v", f)
	}
	if f := got["resolver"]; f.Status != probe.OK || !strings.Contains(f.Detail, "127.0.0.53") {
		t.Errorf("resolver finding: %+v", f)
	}

	write(filepath.Join(proc, "sys/net/ipv4/ping_group_range"), "0 2147483647\n")
	env.RawSocketOK = func() error { return nil }
	got = map[string]Finding{}
	for _, f := range Doctor(context.Background(), env) {
		got[f.Item] = f
	}
	if _, bad := got["icmp"]; bad || got["icmp-unprivileged"].Status != probe.OK || got["icmp-raw"].Status != probe.OK {
		t.Errorf("permitted ICMP reported as a problem: %+v", got)
	}
}

// The real machine: whatever it allows, Doctor must answer without error.
func TestDoctorSystem(t *testing.T) {
	fs := Doctor(context.Background(), SystemDoctorEnv())
	if len(fs) < 4 {
		t.Fatalf("too few findings: %+v", fs)
	}
}
