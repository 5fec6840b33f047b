package sshtest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// SplitShell splits a command line the way a POSIX shell splits a simple
// command: blanks separate words; '...' is literal; "..." is literal except
// that \ escapes $ ` " \ and newline; a \ outside quotes escapes the next
// character. Anything that would make the shell do more than split words
// (unquoted ; | & < > ( ) $ ` * ? [ ~ # or newline, or $ and ` inside double
// quotes) is an error, so the in-process server never guesses. Unquoted
// = { } and ! are errors too: a first word A=b is an assignment, zsh
// expands =word, braces expand and ! negates, so a command line leaving
// them unquoted is a quoting bug the tests should see.
func SplitShell(cmd string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(cmd[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(cmd[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			inWord = true
			i++
			for ; i < len(cmd) && cmd[i] != '"'; i++ {
				switch cmd[i] {
				case '\\':
					if i+1 < len(cmd) && strings.IndexByte("$`\"\\\n", cmd[i+1]) >= 0 {
						i++
						if cmd[i] != '\n' {
							cur.WriteByte(cmd[i])
						}
						continue
					}
					cur.WriteByte('\\')
				case '$', '`':
					return nil, fmt.Errorf("unsupported expansion %q inside double quotes", cmd[i])
				default:
					cur.WriteByte(cmd[i])
				}
			}
			if i >= len(cmd) {
				return nil, errors.New("unterminated double quote")
			}
		case c == '\\':
			if i+1 >= len(cmd) {
				return nil, errors.New("trailing backslash")
			}
			i++
			if cmd[i] == '\n' {
				continue // line continuation
			}
			cur.WriteByte(cmd[i])
			inWord = true
		case strings.IndexByte(";|&<>()$`*?[\n={}!", c) >= 0,
			(c == '~' || c == '#') && !inWord:
			return nil, fmt.Errorf("unsupported shell syntax %q", c)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// exec runs a command line for the in-process server and returns its exit
// status. Only sha256sum exists.
func (s *Server) exec(cmdline string, stdin io.Reader, stdout, stderr io.Writer) int {
	argv, err := SplitShell(cmdline)
	if err != nil {
		fmt.Fprintf(stderr, "sh: %v\n", err)
		return 2
	}
	if len(argv) == 0 {
		return 0
	}
	switch argv[0] {
	case "sha256sum":
		return sha256sum(s.cfg.Root, argv[1:], stdin, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "sh: 1: %s: not found\n", argv[0])
		return 127
	}
}

// sha256sum behaves like GNU coreutils sha256sum for plain checksumming:
// "HEX  NAME" lines (names with \, newline or CR escaped and the line
// prefixed with \), exit 1 if any file failed.
func sha256sum(dir string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var files []string
	opts := true
	for _, a := range args {
		switch {
		case opts && a == "--":
			opts = false
		case opts && strings.HasPrefix(a, "-") && a != "-":
			fmt.Fprintf(stderr, "sha256sum: invalid option -- '%s'\nTry 'sha256sum --help' for more information.\n", strings.TrimLeft(a, "-"))
			return 1
		default:
			files = append(files, a)
		}
	}
	if len(files) == 0 {
		files = []string{"-"}
	}
	status := 0
	for _, name := range files {
		h := sha256.New()
		var err error
		if name == "-" {
			_, err = io.Copy(h, stdin)
		} else {
			p := name
			if dir != "" && !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			var f *os.File
			f, err = os.Open(p)
			if err == nil {
				_, err = io.Copy(h, f)
				f.Close()
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "sha256sum: %s: %s\n", name, errnoText(err))
			status = 1
			continue
		}
		line := hex.EncodeToString(h.Sum(nil)) + "  "
		if strings.ContainsAny(name, "\\\n\r") {
			r := strings.NewReplacer("\\", "\\\\", "\n", "\\n", "\r", "\\r")
			line = "\\" + line + r.Replace(name)
		} else {
			line += name
		}
		if _, err := io.WriteString(stdout, line+"\n"); err != nil {
			return 1
		}
	}
	return status
}

func errnoText(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "No such file or directory"
	case errors.Is(err, fs.ErrPermission):
		return "Permission denied"
	case errors.Is(err, syscall.EISDIR):
		return "Is a directory"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
