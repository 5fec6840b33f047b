package config

import (
	"sort"
	"strconv"
	"strings"
)

// Issue is one problem found in the configuration.
type Issue struct {
	// File is the display name of the config file ("" when the value did
	// not come from a file).
	File string `json:"file,omitempty"`
	// Line and Column are 1-based; 0 when unknown.
	Line   int `json:"line,omitempty"`
	Column int `json:"column,omitempty"`
	// Source names where a value without a file position came from, e.g.
	// "NETOPS_BACKEND_KIND" or "--backend-kind".
	Source string `json:"source,omitempty"`
	// Key is the path of the offending key, e.g. "targets[1].address".
	Key string `json:"key,omitempty"`
	// Msg says what is wrong and what to do; lowercase, one line.
	Msg string `json:"message"`
}

// Where renders the location part: "file:line:col", "file:line", "file",
// the Source, or "".
func (i Issue) Where() string {
	switch {
	case i.Source != "":
		return i.Source
	case i.File != "" && i.Line > 0 && i.Column > 0:
		return i.File + ":" + strconv.Itoa(i.Line) + ":" + strconv.Itoa(i.Column)
	case i.File != "" && i.Line > 0:
		return i.File + ":" + strconv.Itoa(i.Line)
	case i.Line > 0:
		return "line " + strconv.Itoa(i.Line)
	}
	return i.File
}

// String renders the issue on one line: "where: key: message".
func (i Issue) String() string {
	var b strings.Builder
	if w := i.Where(); w != "" {
		b.WriteString(w)
		b.WriteString(": ")
	}
	if i.Key != "" {
		b.WriteString(i.Key)
		b.WriteString(": ")
	}
	b.WriteString(oneLine(i.Msg))
	return b.String()
}

// Error is returned by Load, Parse, Set and Validate. It holds every issue
// found, and the underlying I/O error when the file could not be read.
type Error struct {
	Issues []Issue
	Err    error
}

// Error renders one line per issue.
func (e *Error) Error() string {
	if len(e.Issues) == 0 {
		if e.Err != nil {
			return e.Err.Error()
		}
		return "invalid configuration"
	}
	lines := make([]string, len(e.Issues))
	for i, is := range e.Issues {
		lines[i] = is.String()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the underlying I/O error, if any.
func (e *Error) Unwrap() error { return e.Err }

// sortIssues orders issues by file position; issues without a line keep
// their relative order and come last.
func sortIssues(issues []Issue) {
	sort.SliceStable(issues, func(a, b int) bool {
		la, lb := issues[a].Line, issues[b].Line
		if la == 0 || lb == 0 {
			return la != 0 && lb == 0
		}
		if la != lb {
			return la < lb
		}
		return issues[a].Column < issues[b].Column
	})
}

func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}
