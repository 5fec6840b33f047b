package sshconn

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// defaultIdentities returns the key files (under ~/.ssh) tried, when they
// exist, if neither Options nor ssh_config name an identity file (as
// OpenSSH does).
func defaultIdentities() []string { return []string{"id_ed25519", "id_ecdsa", "id_rsa"} }

// authenticator builds the auth methods of every hop of one Dial.
type authenticator struct {
	explicit  []ssh.Signer // from Options.IdentityFiles
	home      string
	password  string
	agent     agent.ExtendedAgent
	agentConn net.Conn
	closeOnce sync.Once

	mu    sync.Mutex
	cache map[string]ssh.Signer // identity file -> signer (nil: unusable)
	notes []string              // why some keys were skipped
}

func newAuthenticator(ctx context.Context, o Options, env func(string) string, home string) (*authenticator, error) {
	a := &authenticator{home: home, password: o.Password, cache: map[string]ssh.Signer{}}
	for _, f := range o.IdentityFiles {
		f = expandHome(f, home)
		s, err := loadSigner(f)
		if err != nil {
			return nil, err
		}
		a.explicit = append(a.explicit, s)
	}
	if o.UseAgent {
		if sock := env("SSH_AUTH_SOCK"); sock != "" {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", sock)
			if err != nil {
				a.notes = append(a.notes, fmt.Sprintf("ssh-agent at %s not reachable: %v", sock, errors.Unwrap(err)))
			} else {
				a.agentConn = conn
				a.agent = agent.NewClient(conn)
			}
		} else {
			a.notes = append(a.notes, "ssh-agent not used: SSH_AUTH_SOCK is not set")
		}
	}
	return a, nil
}

// close closes the agent connection (safe to call more than once, from any
// goroutine): a call blocked on the agent fails at once.
func (a *authenticator) close() {
	a.closeOnce.Do(func() {
		if a.agentConn != nil {
			_ = a.agentConn.Close()
		}
	})
}

// loadSigner reads a private key file named explicitly by the user; every
// failure is an error naming the file.
func loadSigner(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity file: %w", err)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, fmt.Errorf("identity file %s is protected by a passphrase; load it into ssh-agent (ssh-add %s) instead", path, path)
		}
		return nil, fmt.Errorf("identity file %s: %w", path, err)
	}
	return s, nil
}

// optionalSigner loads an identity file from ssh_config or the defaults; a
// missing file is skipped silently, other problems are noted for the
// failure message.
func (a *authenticator) optionalSigner(path string) ssh.Signer {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s, ok := a.cache[path]; ok {
		return s
	}
	data, err := os.ReadFile(path)
	var s ssh.Signer
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		a.notes = append(a.notes, fmt.Sprintf("skipped %s: %v", path, errors.Unwrap(err)))
	default:
		s, err = ssh.ParsePrivateKey(data)
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			a.notes = append(a.notes, fmt.Sprintf("skipped %s: protected by a passphrase (load it into ssh-agent)", path))
		} else if err != nil {
			a.notes = append(a.notes, fmt.Sprintf("skipped %s: %v", path, err))
		}
	}
	a.cache[path] = s
	return s
}

// authRecord remembers which methods the client actually tried on a hop.
type authRecord struct {
	mu      sync.Mutex
	tried   []string
	offered []string
}

func (r *authRecord) add(m string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.tried {
		if t == m {
			return
		}
	}
	r.tried = append(r.tried, m)
}

// signers returns the public keys to offer for hop h, without duplicates,
// in OpenSSH's order: Options.IdentityFiles, then ssh_config IdentityFile
// (or the defaults), then the agent's keys. With IdentitiesOnly only agent
// keys whose IdentityFile has a .pub file naming them are offered (a key
// file protected by a passphrase is then used through the agent).
func (a *authenticator) signers(h hop) []ssh.Signer {
	var out []ssh.Signer
	seen := map[string]bool{}
	add := func(s ssh.Signer) {
		if s == nil {
			return
		}
		k := string(s.PublicKey().Marshal())
		if !seen[k] {
			seen[k] = true
			out = append(out, s)
		}
	}
	for _, s := range a.explicit {
		add(s)
	}
	files := h.ids
	if len(files) == 0 && len(a.explicit) == 0 && a.home != "" {
		for _, d := range defaultIdentities() {
			files = append(files, filepath.Join(a.home, ".ssh", d))
		}
	}
	for _, f := range files {
		add(a.optionalSigner(f))
	}
	if a.agent != nil {
		ss, err := a.agent.Signers()
		if err != nil {
			a.mu.Lock()
			a.notes = append(a.notes, "ssh-agent: "+err.Error())
			a.mu.Unlock()
		}
		var allowed map[string]bool
		if h.identitiesOnly {
			allowed = map[string]bool{}
			for _, s := range a.explicit {
				allowed[string(s.PublicKey().Marshal())] = true
			}
			for _, f := range files {
				if b, err := os.ReadFile(f + ".pub"); err == nil {
					if k, _, _, _, err := ssh.ParseAuthorizedKey(b); err == nil {
						allowed[string(k.Marshal())] = true
					}
				}
			}
		}
		for _, s := range ss {
			if allowed == nil || allowed[string(s.PublicKey().Marshal())] {
				add(s)
			}
		}
	}
	return out
}

// methods returns the auth methods for hop h; the password is offered to
// the final target only, never to a jump host.
func (a *authenticator) methods(h hop, rec *authRecord, isFinal bool) []ssh.AuthMethod {
	ms := []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		ss := a.signers(h)
		if len(ss) > 0 {
			rec.add("publickey")
		}
		return ss, nil
	})}
	rec.offered = append(rec.offered, "publickey")
	if a.password != "" && isFinal {
		rec.offered = append(rec.offered, "password", "keyboard-interactive")
		ms = append(ms,
			ssh.PasswordCallback(func() (string, error) {
				rec.add("password")
				return a.password, nil
			}),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, echos []bool) ([]string, error) {
				rec.add("keyboard-interactive")
				answers := make([]string, len(questions))
				for i := range questions {
					if !echos[i] {
						answers[i] = a.password
					}
				}
				return answers, nil
			}))
	}
	return ms
}

// failure builds the ErrAuth error for hop h.
func (a *authenticator) failure(h hop, rec *authRecord, isFinal bool) error {
	rec.mu.Lock()
	tried := append([]string(nil), rec.tried...)
	rec.mu.Unlock()
	var msg strings.Builder
	msg.WriteString("authentication failed")
	switch {
	case len(tried) > 0:
		fmt.Fprintf(&msg, " (tried %s)", strings.Join(tried, ", "))
	case (a.password == "" || !isFinal) && len(a.signers(h)) == 0:
		if isFinal {
			msg.WriteString(" (no key or password to offer: give an identity file, load a key into ssh-agent or set a password)")
		} else {
			msg.WriteString(" (no key to offer to the jump host; the password is offered to the final target only: give an identity file or load a key into ssh-agent)")
		}
	default:
		msg.WriteString(" (the server accepts none of the methods we have)")
	}
	a.mu.Lock()
	notes := append([]string(nil), a.notes...)
	a.mu.Unlock()
	if len(notes) > 0 {
		msg.WriteString("; ")
		msg.WriteString(strings.Join(notes, "; "))
	}
	return &Error{Target: h.label(), Kind: ErrAuth, Msg: msg.String()}
}
