package sshconn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// SSHConfig is the part of an OpenSSH client config file (ssh_config(5))
// netops understands: Host and Match blocks, Include, and the keywords
// HostName, Port, User, IdentityFile, IdentitiesOnly, ProxyJump,
// ProxyCommand (reported so that Dial can refuse it), UserKnownHostsFile
// and HostKeyAlias. Other keywords, StrictHostKeyChecking included, are
// ignored (netops's host key policy comes from its own config). As in OpenSSH, the first value obtained for a keyword wins
// (IdentityFile accumulates), so specific Host blocks go before `Host *`.
//
// Host patterns support *, ? and negation (!pattern). Match supports all,
// host, originalhost and user (each optionally negated with !). There is a
// single pass, which is the final one, so "final" is true and "canonical"
// false (netops does no host name canonicalisation); any other criterion
// (exec, localuser, ...) is treated as not matching, so netops never runs
// Match exec commands.
type SSHConfig struct {
	entries []configEntry
}

// HostConfig is what ssh_config says about one host.
type HostConfig struct {
	HostName      string // "" if not set; %h and %% expanded
	Port          int    // 0 if not set
	User          string
	IdentityFiles []string // as written, ~ and %-tokens not yet expanded
	ProxyJump     string   // "" if not set; may be "none"
	// ProxyCommand is the command as written ("" if not set; may be
	// "none"). Of ProxyJump and ProxyCommand the first obtained wins, as
	// in OpenSSH; the other stays "".
	ProxyCommand       string
	IdentitiesOnly     bool   // IdentitiesOnly yes
	UserKnownHostsFile string // the first file, as written ("" if not set)
	HostKeyAlias       string // "" if not set
}

// condition is one test a block puts on the host; an entry applies when all
// of its conditions hold.
type condition struct {
	kind     string // "host" (Host line), "match-host", "match-originalhost", "match-user", "all", "never"
	patterns []string
	negate   bool // Match !criterion
}

type configEntry struct {
	conds   []condition
	keyword string // lower case
	args    []string
	file    string
	line    int
}

const maxIncludeDepth = 16

// LoadSSHConfig reads an ssh_config file. "" means ~/.ssh/config under home,
// "none" means no file; a missing file gives an empty config.
func LoadSSHConfig(file, home string) (*SSHConfig, error) {
	return loadSSHConfig(file, home)
}

func loadSSHConfig(file, home string) (*SSHConfig, error) {
	c := &SSHConfig{}
	if file == "none" {
		return c, nil
	}
	if file == "" {
		if home == "" {
			return c, nil
		}
		file = filepath.Join(home, ".ssh", "config")
	}
	file = expandHome(file, home)
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ssh config: %w", err)
	}
	if err := c.parse(file, data, home, nil, 0); err != nil {
		return nil, err
	}
	return c, nil
}

// ParseSSHConfig parses ssh_config text; name is used in error messages and
// to resolve relative Include paths (with home for ~/.ssh).
func ParseSSHConfig(name string, data []byte, home string) (*SSHConfig, error) {
	c := &SSHConfig{}
	if err := c.parse(name, data, home, nil, 0); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *SSHConfig) parse(file string, data []byte, home string, outer []condition, depth int) error {
	if depth > maxIncludeDepth {
		return fmt.Errorf("ssh config %s: Include nested more than %d deep", file, maxIncludeDepth)
	}
	conds := outer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		kw, args, err := splitConfigLine(sc.Text())
		if err != nil {
			return fmt.Errorf("ssh config %s:%d: %w", file, n, err)
		}
		if kw == "" {
			continue
		}
		bad := func(format string, a ...any) error {
			return fmt.Errorf("ssh config %s:%d: %s", file, n, fmt.Sprintf(format, a...))
		}
		switch kw {
		case "host":
			if len(args) == 0 {
				return bad("Host needs at least one pattern")
			}
			conds = append(append([]condition(nil), outer...), condition{kind: "host", patterns: args})
		case "match":
			mc, err := parseMatch(args)
			if err != nil {
				return bad("%v", err)
			}
			conds = append(append([]condition(nil), outer...), mc...)
		case "include":
			if len(args) == 0 {
				return bad("Include needs a file")
			}
			for _, a := range args {
				pat := expandHome(a, home)
				if !filepath.IsAbs(pat) {
					if home == "" {
						return bad("Include %q: relative path and no home directory", a)
					}
					pat = filepath.Join(home, ".ssh", pat)
				}
				matches, err := filepath.Glob(pat)
				if err != nil {
					return bad("Include %q: %v", a, err)
				}
				for _, m := range matches {
					inc, err := os.ReadFile(m)
					if err != nil {
						return bad("Include %q: %v", a, err)
					}
					if err := c.parse(m, inc, home, conds, depth+1); err != nil {
						return err
					}
				}
			}
		default:
			if len(args) == 0 {
				return bad("%s needs a value", kw)
			}
			if kw == "port" {
				if _, err := parsePort(args[0]); err != nil {
					return bad("Port: %v", err)
				}
			}
			c.entries = append(c.entries, configEntry{conds: conds, keyword: kw, args: args, file: file, line: n})
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("ssh config %s: %w", file, err)
	}
	return nil
}

func parseMatch(args []string) ([]condition, error) {
	if len(args) == 0 {
		return nil, errors.New("Match needs criteria (e.g. Match host *.example.com)")
	}
	var out []condition
	for i := 0; i < len(args); i++ {
		crit := strings.ToLower(args[i])
		neg := strings.HasPrefix(crit, "!")
		crit = strings.TrimPrefix(crit, "!")
		switch crit {
		case "all":
			out = append(out, condition{kind: "all", negate: neg})
			continue
		case "final":
			// One pass, which is the final one.
			out = append(out, condition{kind: "all", negate: neg})
			continue
		case "canonical":
			out = append(out, condition{kind: "never", negate: neg})
			continue
		}
		if i+1 >= len(args) {
			return nil, fmt.Errorf("Match %s needs an argument", crit)
		}
		i++
		pats := strings.Split(args[i], ",")
		switch crit {
		case "host", "originalhost", "user":
			out = append(out, condition{kind: "match-" + crit, patterns: pats, negate: neg})
		default:
			// exec, localuser, localnetwork, tagged, ...: never evaluated.
			out = append(out, condition{kind: "never"})
		}
	}
	return out, nil
}

// splitConfigLine splits "Keyword value...", "Keyword=value" and quoted
// arguments; a token starting with # ends the line.
func splitConfigLine(line string) (string, []string, error) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return "", nil, nil
	}
	end := strings.IndexAny(line, " \t=")
	if end < 0 {
		return strings.ToLower(line), nil, nil
	}
	kw := strings.ToLower(line[:end])
	rest := strings.TrimLeft(line[end:], " \t")
	rest = strings.TrimPrefix(rest, "=")
	rest = strings.TrimLeft(rest, " \t")
	var args []string
	for rest != "" {
		if rest[0] == '#' {
			break
		}
		if rest[0] == '"' {
			j := strings.IndexByte(rest[1:], '"')
			if j < 0 {
				return "", nil, errors.New("unterminated quote")
			}
			args = append(args, rest[1:1+j])
			rest = strings.TrimLeft(rest[2+j:], " \t")
			continue
		}
		j := strings.IndexAny(rest, " \t")
		if j < 0 {
			j = len(rest)
		}
		args = append(args, rest[:j])
		rest = strings.TrimLeft(rest[j:], " \t")
	}
	return kw, args, nil
}

// Resolve returns the settings for host as the user wrote it (alias), with
// the remote user if already known ("" otherwise, for Match user).
// A nil *SSHConfig resolves to nothing.
func (c *SSHConfig) Resolve(host, user string) HostConfig {
	var hc HostConfig
	if c == nil {
		return hc
	}
	set := map[string]bool{}
	for _, e := range c.entries {
		if !c.applies(e.conds, host, hc.HostName, user, hc.User) {
			continue
		}
		if e.keyword != "identityfile" && set[e.keyword] {
			continue
		}
		switch e.keyword {
		case "hostname":
			hc.HostName = expandHostToken(e.args[0], host)
		case "port":
			hc.Port, _ = parsePort(e.args[0]) // validated at parse time
		case "user":
			hc.User = e.args[0]
		case "identityfile":
			if strings.EqualFold(e.args[0], "none") {
				continue
			}
			hc.IdentityFiles = append(hc.IdentityFiles, e.args[0])
		case "proxyjump":
			if set["proxycommand"] {
				continue // the first of ProxyJump and ProxyCommand wins
			}
			hc.ProxyJump = e.args[0]
		case "proxycommand":
			if set["proxyjump"] {
				continue
			}
			hc.ProxyCommand = strings.Join(e.args, " ")
		case "identitiesonly":
			hc.IdentitiesOnly = strings.EqualFold(e.args[0], "yes") || strings.EqualFold(e.args[0], "true")
		case "userknownhostsfile":
			hc.UserKnownHostsFile = e.args[0]
		case "hostkeyalias":
			hc.HostKeyAlias = e.args[0]
		default:
			continue
		}
		set[e.keyword] = true
	}
	return hc
}

func expandHostToken(v, host string) string {
	if !strings.Contains(v, "%") {
		return v
	}
	v = strings.ReplaceAll(v, "%%", "\x00")
	v = strings.ReplaceAll(v, "%h", host)
	return strings.ReplaceAll(v, "\x00", "%")
}

func (c *SSHConfig) applies(conds []condition, host, hostName, user, cfgUser string) bool {
	for _, cd := range conds {
		var ok bool
		switch cd.kind {
		case "host":
			ok = matchHostPatterns(cd.patterns, host)
		case "all":
			ok = true
		case "never":
			ok = false
		case "match-host":
			h := host
			if hostName != "" {
				h = hostName
			}
			ok = matchPatternList(cd.patterns, h)
		case "match-originalhost":
			ok = matchPatternList(cd.patterns, host)
		case "match-user":
			u := user
			if u == "" {
				u = cfgUser
			}
			ok = u != "" && matchPatternList(cd.patterns, u)
		}
		if cd.negate {
			ok = !ok
		}
		if !ok {
			return false
		}
	}
	return true
}

// matchHostPatterns implements a Host line: some positive pattern matches
// and no negated one does.
func matchHostPatterns(pats []string, host string) bool {
	host = strings.ToLower(host)
	matched := false
	for _, p := range pats {
		if neg, ok := strings.CutPrefix(p, "!"); ok {
			if globMatch(strings.ToLower(neg), host) {
				return false
			}
			continue
		}
		if globMatch(strings.ToLower(p), host) {
			matched = true
		}
	}
	return matched
}

// matchPatternList implements a comma-separated Match pattern list.
func matchPatternList(pats []string, s string) bool {
	return matchHostPatterns(pats, s)
}

// globMatch matches * and ? (no character classes, as ssh_config).
func globMatch(pat, s string) bool {
	// path.Match treats [ and \ specially; escape them so only * and ? are
	// wildcards.
	var b strings.Builder
	for _, r := range pat {
		if r == '[' || r == '\\' || r == ']' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	// path.Match's * does not cross '/', which host names never contain.
	ok, err := path.Match(b.String(), s)
	return err == nil && ok
}
