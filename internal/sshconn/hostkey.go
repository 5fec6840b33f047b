package sshconn

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// DefaultGlobalKnownHostsFile is the system-wide known_hosts file consulted
// when Options.GlobalKnownHostsFile is "".
const DefaultGlobalKnownHostsFile = "/etc/ssh/ssh_known_hosts"

// hostKeys holds the host key policy of one Dial.
type hostKeys struct {
	file     string // the user known_hosts file (unless ssh_config names one)
	global   string // the system-wide file, read-only; "" -> none
	policy   string
	pins     map[string]string // "host:port" -> fingerprint
	finalPin string
	dbs      map[string]ssh.HostKeyCallback // user file -> database of it and global; nil value: neither exists
}

// fileFor returns the user known_hosts file for h: ssh_config
// UserKnownHostsFile when set, else Options.KnownHostsFile.
func (hk *hostKeys) fileFor(h hop) string {
	if h.knownHosts != "" {
		return h.knownHosts
	}
	return hk.file
}

// load reads the user known_hosts file and the global one (missing files
// are empty).
func (hk *hostKeys) load(file string) error {
	if hk.policy == PolicyFingerprint {
		return nil // known_hosts is not consulted
	}
	if _, ok := hk.dbs[file]; ok {
		return nil
	}
	var files []string
	for _, f := range []string{file, hk.global} {
		if f == "" {
			continue
		}
		_, err := os.Stat(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("known_hosts: %w", err)
		}
		files = append(files, f)
	}
	var db ssh.HostKeyCallback
	if len(files) > 0 {
		var err error
		db, err = knownhosts.New(files...)
		if err != nil {
			return knownHostsParseError(err)
		}
	}
	if hk.dbs == nil {
		hk.dbs = map[string]ssh.HostKeyCallback{}
	}
	hk.dbs[file] = db
	return nil
}

// knownHostsParseError rewrites x/crypto's "knownhosts: FILE:N: why" as
// "known_hosts FILE line N: why (fix or remove line N)".
func knownHostsParseError(err error) error {
	msg, ok := strings.CutPrefix(err.Error(), "knownhosts: ")
	if ok {
		// FILE may contain ":"; the line number is the last ":N: " before why.
		for i := strings.Index(msg, ": "); i >= 0; {
			loc, why := msg[:i], msg[i+2:]
			if j := strings.LastIndexByte(loc, ':'); j > 0 {
				if n, err := strconv.Atoi(loc[j+1:]); err == nil && n > 0 {
					return fmt.Errorf("known_hosts %s line %d: %s (fix or remove line %d)", loc[:j], n, why, n)
				}
			}
			k := strings.Index(msg[i+2:], ": ")
			if k < 0 {
				break
			}
			i += 2 + k
		}
	}
	return fmt.Errorf("known_hosts: %w", err)
}

// hostCheck verifies the host key of one hop.
type hostCheck struct {
	hk     *hostKeys
	h      hop
	file   string              // the user known_hosts file for h
	db     ssh.HostKeyCallback // nil: no known_hosts file exists
	lookup string              // the name looked up and recorded: "host:port" or HostKeyAlias
	pin    string
	known  []knownhosts.KnownKey // known_hosts keys for the host (any type)
	err    error                 // the rich error of a failed check
}

func (hk *hostKeys) callback(h hop, isFinal bool) *hostCheck {
	c := &hostCheck{hk: hk, h: h, file: hk.fileFor(h), lookup: h.addr()}
	c.db = hk.dbs[c.file]
	if h.keyAlias != "" {
		// As OpenSSH: the alias as is, without the port.
		c.lookup = net.JoinHostPort(h.keyAlias, strconv.Itoa(DefaultPort))
	}
	if isFinal && hk.finalPin != "" {
		c.pin = hk.finalPin
	} else if p := hk.pins[h.addr()]; p != "" {
		c.pin = p
	} else if h.alias != "" {
		c.pin = hk.pins[net.JoinHostPort(strings.ToLower(h.alias), strconv.Itoa(h.port))]
	}
	if c.pin == "" && c.db != nil {
		// Ask the database with a key it cannot hold to learn which keys it
		// has for this host.
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err == nil {
			if probe, err := ssh.NewPublicKey(pub); err == nil {
				var ke *knownhosts.KeyError
				if errors.As(c.db(c.lookup, &net.TCPAddr{IP: net.IPv4zero}, probe), &ke) {
					c.known = ke.Want
				}
			}
		}
	}
	return c
}

// algorithms returns the host key algorithms to offer so that the server
// presents a key type we know (nil: library defaults).
func (c *hostCheck) algorithms() []string {
	var algos []string
	seen := map[string]bool{}
	for _, k := range c.known {
		for _, a := range algorithmsForKeyType(k.Key.Type()) {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	// In the library's order of preference, not known_hosts order.
	rank := map[string]int{}
	for i, a := range ssh.SupportedAlgorithms().HostKeys {
		rank[a] = i + 1
	}
	sort.SliceStable(algos, func(i, j int) bool {
		ri, rj := rank[algos[i]], rank[algos[j]]
		if ri == 0 || rj == 0 {
			return ri != 0 && rj == 0 // unranked last
		}
		return ri < rj
	})
	return algos
}

func algorithmsForKeyType(t string) []string {
	switch t {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	case ssh.CertAlgoRSAv01:
		return []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01}
	default:
		return []string{t}
	}
}

func (c *hostCheck) target() string { return c.h.where() }

func (c *hostCheck) verify(_ string, remote net.Addr, key ssh.PublicKey) error {
	c.err = c.check(remote, key)
	return c.err
}

const mitmHint = "possible man-in-the-middle"

func (c *hostCheck) check(remote net.Addr, key ssh.PublicKey) error {
	offered := ssh.FingerprintSHA256(key)
	if c.pin != "" {
		if fingerprintEqual(c.pin, offered) {
			return nil
		}
		return &Error{Target: c.target(), Kind: ErrHostKeyChanged, Msg: fmt.Sprintf(
			"host key mismatch: pinned fingerprint is %s, server offered %s (%s) (%s; update the pinned fingerprint only if the change is expected)",
			c.pin, offered, key.Type(), mitmHint)}
	}
	if c.hk.policy == PolicyFingerprint {
		return &Error{Target: c.target(), Kind: ErrHostKeyUnknown, Msg: fmt.Sprintf(
			"host key unknown: host key policy is fingerprint but no fingerprint is pinned for %s (server offered %s %s); pin it in ssh.fingerprints after checking it out of band",
			c.h.addr(), key.Type(), offered)}
	}
	var err error
	if c.db != nil {
		err = c.db(c.lookup, remote, key)
		if err == nil {
			return nil
		}
	}
	var revoked *knownhosts.RevokedError
	if errors.As(err, &revoked) {
		return &Error{Target: c.target(), Kind: ErrHostKeyChanged, Msg: fmt.Sprintf(
			"host key %s (%s) is marked @revoked in %s:%d (%s)", offered, key.Type(), revoked.Revoked.Filename, revoked.Revoked.Line, mitmHint)}
	}
	var ke *knownhosts.KeyError
	if err != nil && !errors.As(err, &ke) {
		return &Error{Target: c.target(), Kind: ErrHostKeyUnknown, Msg: "host key check: " + err.Error(), Err: err}
	}
	if ke != nil && len(ke.Want) > 0 {
		want := ke.Want[0]
		for _, w := range ke.Want {
			if w.Key.Type() == key.Type() {
				want = w
				break
			}
		}
		return &Error{Target: c.target(), Kind: ErrHostKeyChanged, Msg: fmt.Sprintf(
			"host key mismatch: %s:%d has %s (%s), server offered %s (%s) (%s; if the change is expected remove the old key with: ssh-keygen -f %s -R %s)",
			want.Filename, want.Line, ssh.FingerprintSHA256(want.Key), want.Key.Type(), offered, key.Type(),
			mitmHint, Quote(want.Filename), Quote(knownhosts.Normalize(c.lookup)))}
	}
	// Unknown host (in neither the user nor the global file).
	if c.hk.policy == PolicyAcceptNew {
		if err := c.record(key); err != nil {
			return &Error{Target: c.target(), Kind: ErrHostKeyUnknown, Msg: "accept-new: " + err.Error(), Err: err}
		}
		return nil
	}
	return &Error{Target: c.target(), Kind: ErrHostKeyUnknown, Msg: fmt.Sprintf(
		"host key unknown: %s is not in %s (server offered %s %s); check the fingerprint out of band, then connect once with host key policy accept-new or pin it in ssh.fingerprints",
		knownhosts.Normalize(c.lookup), c.file, key.Type(), offered)}
}

// noCommonAlgorithm explains a handshake that failed because the server
// offers none of the key types known_hosts has for it.
func (c *hostCheck) noCommonAlgorithm() error {
	var parts []string
	for _, k := range c.known {
		parts = append(parts, fmt.Sprintf("%s:%d has %s (%s)", k.Filename, k.Line, ssh.FingerprintSHA256(k.Key), k.Key.Type()))
	}
	return &Error{Target: c.target(), Kind: ErrHostKeyChanged, Msg: fmt.Sprintf(
		"host key mismatch: %s, but the server offers no key of these types (%s; if the change is expected remove the old key with: ssh-keygen -f %s -R %s)",
		strings.Join(parts, ", "), mitmHint, Quote(c.known[0].Filename), Quote(knownhosts.Normalize(c.lookup)))}
}

// record appends the host key to the user known_hosts file, creating it
// (0600) and its directory (0700) when missing. One O_APPEND write per line
// keeps concurrent writers from interleaving.
//
// Appending in place is the documented exception to netops's "temp file +
// rename" rule for state files: known_hosts belongs to the user and to
// OpenSSH, which appends the same way, and a rename would race with ssh
// and other netops processes adding their own hosts. A failed write or
// sync truncates the file back to its previous size so that a partial line
// cannot make the whole file unparsable.
func (c *hostCheck) record(key ssh.PublicKey) error {
	file := c.file
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	line := knownhosts.Line([]string{c.lookup}, key) + "\n"
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("record host key in %s: %w", file, err)
	}
	size := st.Size()
	if size > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, size-1); err == nil && last[0] != '\n' {
			line = "\n" + line
		} else if err != nil && err != io.EOF {
			f.Close()
			return fmt.Errorf("record host key in %s: %w", file, err)
		}
	}
	_, err = f.WriteString(line)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		// Undo a partial line (another process appending at the same
		// moment is not expected; OpenSSH does not lock either).
		if terr := f.Truncate(size); terr != nil {
			err = fmt.Errorf("%w (and could not remove the partial line: %v)", err, terr)
		}
		f.Close()
		return fmt.Errorf("record host key in %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("record host key in %s: %w", file, err)
	}
	return nil
}

// fingerprintEqual compares SHA256 fingerprints, tolerating base64 padding.
func fingerprintEqual(pin, offered string) bool {
	norm := func(s string) string {
		s = strings.TrimSpace(s)
		if !strings.HasPrefix(s, "SHA256:") {
			s = "SHA256:" + s
		}
		return strings.TrimRight(s, "=")
	}
	return norm(pin) == norm(offered)
}

// validFingerprint reports whether fp is "SHA256:" followed by 43 base64
// characters (optionally padded with one "=").
func validFingerprint(fp string) bool {
	b64, ok := strings.CutPrefix(strings.TrimSpace(fp), "SHA256:")
	b64 = strings.TrimSuffix(b64, "=")
	if !ok || len(b64) != 43 {
		return false
	}
	for i := 0; i < len(b64); i++ {
		c := b64[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// validatePins checks the format of the pinned fingerprints before any
// connection is made, so a typo reads as a configuration error and not as
// a changed host key.
func validatePins(o Options) error {
	bad := func(where, fp string) error {
		return fmt.Errorf("%s %q is not a SHA256 host key fingerprint: want SHA256: followed by 43 base64 characters, as printed by ssh-keygen -lf", where, fp)
	}
	if o.Fingerprint != "" && !validFingerprint(o.Fingerprint) {
		return bad("pinned fingerprint", o.Fingerprint)
	}
	keys := make([]string, 0, len(o.Fingerprints))
	for k := range o.Fingerprints {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if fp := o.Fingerprints[k]; !validFingerprint(fp) {
			return bad("pinned fingerprint for "+k, fp)
		}
	}
	return nil
}
