package sshtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestSplitShell(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "sha256sum -- a b", want: []string{"sha256sum", "--", "a", "b"}},
		{in: "  a\t b  ", want: []string{"a", "b"}},
		{in: "''", want: []string{""}},
		{in: `'a b'"c d"e\ f`, want: []string{"a bc de f"}},
		{in: `'it'\''s'`, want: []string{"it's"}},
		{in: `"\$HOME \"q\" \\ \x"`, want: []string{`$HOME "q" \ \x`}},
		{in: "'new\nline'", want: []string{"new\nline"}},
		{in: "a\\\nb", want: []string{"ab"}},
		{in: "x#y", want: []string{"x#y"}},
		{in: "", want: nil},
		{in: "'A=b' '=x' '{a,b}' '!'", want: []string{"A=b", "=x", "{a,b}", "!"}},
		{in: "A=b", wantErr: "unsupported shell syntax"},
		{in: "=x", wantErr: "unsupported shell syntax"},
		{in: "--opt=v", wantErr: "unsupported shell syntax"},
		{in: "{a,b}", wantErr: "unsupported shell syntax"},
		{in: "!", wantErr: "unsupported shell syntax"},
		{in: "a;b", wantErr: "unsupported shell syntax"},
		{in: "a|b", wantErr: "unsupported shell syntax"},
		{in: "$HOME", wantErr: "unsupported shell syntax"},
		{in: "`id`", wantErr: "unsupported shell syntax"},
		{in: "*", wantErr: "unsupported shell syntax"},
		{in: "~/x", wantErr: "unsupported shell syntax"},
		{in: "#c", wantErr: "unsupported shell syntax"},
		{in: "a\nb", wantErr: "unsupported shell syntax"},
		{in: `"$x"`, wantErr: "unsupported expansion"},
		{in: "'open", wantErr: "unterminated single quote"},
		{in: `"open`, wantErr: "unterminated double quote"},
		{in: `a\`, wantErr: "trailing backslash"},
	}
	for _, tt := range tests {
		got, err := SplitShell(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("SplitShell(%q) = %q, %v; want error %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitShell(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestSha256sumMatchesCoreutils runs the native sha256sum and GNU
// sha256sum on the same arguments and compares stdout, stderr and status.
func TestSha256sumMatchesCoreutils(t *testing.T) {
	bin, err := exec.LookPath("sha256sum")
	if err != nil {
		t.Skip("GNU sha256sum not installed")
	}
	dir := t.TempDir()
	for name, data := range map[string]string{
		"plain": "hello\n", "with space": "", "back\\slash": "x", "new\nline": "y", "cr\rname": "z", "-dash": "d",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--", "plain", "with space", "back\\slash", "new\nline", "cr\rname", "-dash"},
		{"plain", filepath.Join(dir, "plain")},
		{"--", "missing", "plain"},
		{"--", "subdir"},
		{"-x"},
	} {
		var out, errOut bytes.Buffer
		status := sha256sum(dir, args, strings.NewReader(""), &out, &errOut)

		cmd := exec.Command(bin, args...)
		cmd.Args[0] = "sha256sum" // as a shell running it from PATH would
		cmd.Dir = dir
		var wantOut, wantErr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &wantOut, &wantErr
		wantStatus := 0
		if err := cmd.Run(); err != nil {
			ee, ok := err.(*exec.ExitError)
			if !ok {
				t.Fatal(err)
			}
			wantStatus = ee.ExitCode()
		}
		if status != wantStatus || out.String() != wantOut.String() || errOut.String() != wantErr.String() {
			t.Errorf("sha256sum %q:\n native   %d %q %q\n coreutils %d %q %q",
				args, status, out.String(), errOut.String(), wantStatus, wantOut.String(), wantErr.String())
		}
	}
}

func TestKnownHostsLineAndKeys(t *testing.T) {
	id, signer := GenerateKey(t)
	st, err := os.Stat(id)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v %v", err, st.Mode())
	}
	data, _ := os.ReadFile(id)
	parsed, err := ssh.ParsePrivateKey(data)
	if err != nil || !bytes.Equal(parsed.PublicKey().Marshal(), signer.PublicKey().Marshal()) {
		t.Fatalf("identity file does not parse back: %v", err)
	}
	s := Start(t, Config{})
	line := s.KnownHostsLine()
	if !strings.HasPrefix(line, "[127.0.0.1]:") || !strings.Contains(line, " ssh-ed25519 ") {
		t.Fatalf("known_hosts line %q", line)
	}
	if s.Target("u").Port != s.Port || s.Fingerprint() != ssh.FingerprintSHA256(s.HostKey) {
		t.Fatal("Target/Fingerprint")
	}
}
