// Package render turns command results into the output formats netops speaks.
//
// Every command supports text and json. Text is aligned and may be colored on a
// terminal; when stdout is not a terminal it becomes stable tab-separated lines with
// no header and no color, so scripts can cut/awk it. JSON is one document per command
// (JSON Lines for streams). Diag adds junit, tap, nagios and prometheus on top.
package render

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"unicode/utf8"
)

// Format is an output format name as given to --output.
type Format string

// Formats every command understands. Commands may accept more (diag).
const (
	Text Format = "text"
	JSON Format = "json"
)

// ParseFormat checks s against the formats a command accepts.
func ParseFormat(s string, allowed ...Format) (Format, error) {
	if len(allowed) == 0 {
		allowed = []Format{Text, JSON}
	}
	for _, f := range allowed {
		if Format(strings.ToLower(s)) == f {
			return f, nil
		}
	}
	names := make([]string, len(allowed))
	for i, f := range allowed {
		names[i] = string(f)
	}
	return "", fmt.Errorf("unknown output format %q (choose one of: %s)", s, strings.Join(names, ", "))
}

// Mode says how text output is laid out.
type Mode struct {
	TTY   bool // aligned columns with a header; otherwise tab-separated lines
	Color bool // ANSI color allowed (TTY only)
}

// Table is a list result: one row per item.
type Table struct {
	Header []string
	Rows   [][]string
	// StatusColumn, when >= 0, is the index of a column holding a status word
	// (OK, WARNING, CRITICAL, UNKNOWN, FAILED...) that is colored on a TTY.
	StatusColumn int
}

// NewTable returns a table with the given header and no status column.
func NewTable(header ...string) *Table {
	return &Table{Header: header, StatusColumn: -1}
}

// Add appends a row.
func (t *Table) Add(cells ...string) { t.Rows = append(t.Rows, cells) }

// WriteText writes the table: aligned with a header on a TTY, else one
// tab-separated line per row (tabs and newlines inside cells become spaces).
func (t *Table) WriteText(w io.Writer, m Mode) error {
	if !m.TTY {
		var b strings.Builder
		for _, r := range t.Rows {
			for i, c := range r {
				if i > 0 {
					b.WriteByte('\t')
				}
				b.WriteString(flatten(c))
			}
			b.WriteByte('\n')
		}
		_, err := io.WriteString(w, b.String())
		return err
	}
	// Widths come from the plain text; color is added after padding so escape
	// codes never disturb the alignment.
	rows := make([][]string, 0, len(t.Rows)+1)
	if len(t.Header) > 0 {
		hdr := make([]string, len(t.Header))
		for i, h := range t.Header {
			hdr[i] = strings.ToUpper(h)
		}
		rows = append(rows, hdr)
	}
	for _, r := range t.Rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = flatten(c)
		}
		rows = append(rows, cells)
	}
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for ri, r := range rows {
		header := ri == 0 && len(t.Header) > 0
		for i, c := range r {
			styled := c
			switch {
			case header:
				styled = Style(m.Color, Bold, c)
			case i == t.StatusColumn:
				styled = Status(m.Color, c)
			}
			b.WriteString(styled)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Record is a single result shown as key/value pairs, in order.
type Record struct {
	Keys   []string
	Values []string
}

// Set appends a key/value pair.
func (r *Record) Set(key, value string) {
	r.Keys = append(r.Keys, key)
	r.Values = append(r.Values, value)
}

// WriteText writes "key:  value" aligned on a TTY, "key<TAB>value" otherwise.
func (r *Record) WriteText(w io.Writer, m Mode) error {
	if !m.TTY {
		var b strings.Builder
		for i, k := range r.Keys {
			b.WriteString(k)
			b.WriteByte('\t')
			b.WriteString(flatten(r.Values[i]))
			b.WriteByte('\n')
		}
		_, err := io.WriteString(w, b.String())
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, k := range r.Keys {
		fmt.Fprintf(tw, "%s\t%s\n", Style(m.Color, Bold, k+":"), flatten(r.Values[i]))
	}
	return tw.Flush()
}

// WriteJSON writes v as one indented JSON document followed by a newline.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	return nil
}

// WriteJSONLine writes v as one compact JSON line (JSON Lines, for streams).
func WriteJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	return nil
}

// SortedKeys returns the keys of m in order, for stable output of maps.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func flatten(s string) string {
	if !strings.ContainsAny(s, "\t\n\r") {
		return s
	}
	return strings.NewReplacer("\t", " ", "\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}
