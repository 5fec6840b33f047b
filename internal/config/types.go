package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written in YAML and JSON as a Go duration
// string ("100ms", "2s", "1m30s"). The zero value means "not set"; a value
// given in a file must be greater than zero.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// IsZero reports whether d is unset.
func (d Duration) IsZero() bool { return d == 0 }

// String returns the canonical form used by Export: time.Duration.String
// without trailing zero units ("1m" rather than "1m0s").
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// ParseDuration parses a Go duration string that must be greater than zero.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New(`empty duration; write e.g. "500ms", "2s" or "1m"`)
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return 0, fmt.Errorf("invalid duration %q: missing unit; write e.g. %q", s, s+"s")
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf(`invalid duration %q; write e.g. "500ms", "2s" or "1m"`, s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("invalid duration %q: must be greater than 0", s)
	}
	return Duration(d), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf(`expected a duration like "2s", got %s`, kindName(n))
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf(`expected a duration string like "2s", got %s`, b)
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Percent is a percentage between 0 and 100, written "20%", 20 or 20.5.
// It is exported as "20%".
type Percent float64

// String returns the canonical form, e.g. "20%" or "12.5%".
func (p Percent) String() string {
	return strconv.FormatFloat(float64(p), 'f', -1, 64) + "%"
}

// ParsePercent parses "20%", "20" or "20.5" into a Percent in [0, 100].
func ParsePercent(s string) (Percent, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSpace(strings.TrimSuffix(t, "%"))
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf(`invalid percentage %q; write e.g. "20%%" or 20`, s)
	}
	if f < 0 || f > 100 {
		return 0, fmt.Errorf("invalid percentage %q: must be between 0 and 100", s)
	}
	return Percent(f), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (p *Percent) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf(`expected a percentage like "20%%", got %s`, kindName(n))
	}
	v, err := ParsePercent(n.Value)
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (p Percent) MarshalYAML() (any, error) { return p.String(), nil }

// UnmarshalJSON implements json.Unmarshaler.
func (p *Percent) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var f float64
		if err := json.Unmarshal(b, &f); err != nil {
			return fmt.Errorf(`expected a percentage like "20%%", got %s`, b)
		}
		s = strconv.FormatFloat(f, 'f', -1, 64)
	}
	v, err := ParsePercent(s)
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// MarshalJSON implements json.Marshaler.
func (p Percent) MarshalJSON() ([]byte, error) { return json.Marshal(p.String()) }

// PortSpec is a list of ports: a comma-separated list of ports ("22,80,443"),
// ranges ("1-1024") and the named sets "top100" and "top1000". In YAML it may
// also be written as a single integer or a list.
type PortSpec string

// PortRange is an inclusive range of TCP/UDP ports.
type PortRange struct{ First, Last int }

// Named port sets accepted in a PortSpec.
const (
	PortsTop100  = "top100"
	PortsTop1000 = "top1000"
)

// Parse returns the explicit ranges of p and the named sets it mentions
// (PortsTop100, PortsTop1000). Expanding named sets is the prober's job.
func (p PortSpec) Parse() (ranges []PortRange, named []string, err error) {
	s := strings.TrimSpace(string(p))
	if s == "" {
		return nil, nil, errors.New(`empty port list; write e.g. "22,80,443", "1-1024" or "top100"`)
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == "":
			return nil, nil, fmt.Errorf("invalid port list %q: empty item; remove the extra comma", s)
		case item == PortsTop100 || item == PortsTop1000:
			named = append(named, item)
		case strings.Contains(item, "-"):
			a, b, _ := strings.Cut(item, "-")
			first, err1 := parsePort(a)
			last, err2 := parsePort(b)
			if err1 != nil || err2 != nil {
				return nil, nil, fmt.Errorf("invalid port range %q: ports must be numbers between 1 and 65535", item)
			}
			if first > last {
				return nil, nil, fmt.Errorf("invalid port range %q: %d is greater than %d; write %d-%d", item, first, last, last, first)
			}
			ranges = append(ranges, PortRange{first, last})
		default:
			n, err := parsePort(item)
			if err != nil {
				return nil, nil, fmt.Errorf(`invalid port %q in %q: use numbers between 1 and 65535, ranges like "1-1024", or top100/top1000`, item, s)
			}
			ranges = append(ranges, PortRange{n, n})
		}
	}
	return ranges, named, nil
}

func parsePort(s string) (int, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("invalid port %q: must be a number between 1 and 65535", s)
	}
	return n, nil
}

// UnmarshalYAML implements yaml.Unmarshaler. It accepts "22,80", 22 and [22, "8000-8080"],
// and stores the canonical comma-separated form.
func (p *PortSpec) UnmarshalYAML(n *yaml.Node) error {
	var parts []string
	switch n.Kind {
	case yaml.ScalarNode:
		parts = append(parts, n.Value)
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf(`expected a port or port range in the list, got %s`, kindName(c))
			}
			parts = append(parts, c.Value)
		}
	default:
		return fmt.Errorf(`expected a port list like "22,80,443" or "1-1024", got %s`, kindName(n))
	}
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	for i, part := range parts {
		items := strings.Split(part, ",")
		for j := range items {
			items[j] = strings.TrimSpace(items[j])
		}
		parts[i] = strings.Join(items, ",")
	}
	v := PortSpec(strings.Join(parts, ","))
	if _, _, err := v.Parse(); err != nil {
		return err
	}
	*p = v
	return nil
}

// Range is a parsed Nagios threshold range ("10", "10:", "~:20", "10:20",
// "@10:20"). A value alerts when it lies outside [Start, End], or inside it
// when Inside is set (the "@" prefix).
type Range struct {
	Start, End float64
	Inside     bool
}

// ParseRange parses a Nagios range string.
func ParseRange(s string) (Range, error) {
	orig := s
	s = strings.TrimSpace(s)
	var r Range
	if strings.HasPrefix(s, "@") {
		r.Inside = true
		s = s[1:]
	}
	bad := func(why string) (Range, error) {
		return Range{}, fmt.Errorf(`invalid range %q: %s; write e.g. "10", "10:", "~:20", "10:20" or "@10:20"`, orig, why)
	}
	if s == "" {
		return bad("empty")
	}
	num := func(t string) (float64, bool) {
		f, err := strconv.ParseFloat(t, 64)
		return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
	}
	start, end, hasColon := strings.Cut(s, ":")
	if !hasColon {
		v, ok := num(s)
		if !ok {
			return bad("not a number")
		}
		r.Start, r.End = 0, v
	} else {
		switch start {
		case "~":
			r.Start = math.Inf(-1)
		case "":
			r.Start = 0
		default:
			v, ok := num(start)
			if !ok {
				return bad("start is not a number")
			}
			r.Start = v
		}
		if end == "" {
			r.End = math.Inf(1)
		} else {
			v, ok := num(end)
			if !ok {
				return bad("end is not a number")
			}
			r.End = v
		}
	}
	if r.Start > r.End {
		return bad("start is greater than end")
	}
	return r, nil
}

// Alert reports whether v triggers the range.
func (r Range) Alert(v float64) bool {
	in := v >= r.Start && v <= r.End
	if r.Inside {
		return in
	}
	return !in
}

// ParseBandwidth parses a transfer rate limit in bytes per second: a number
// with an optional K, M or G suffix (powers of 1024), e.g. "512K", "10M".
func ParseBandwidth(s string) (int64, error) {
	t := strings.TrimSpace(s)
	bad := fmt.Errorf(`invalid bandwidth limit %q; write bytes per second like "512K", "10M" or "1G"`, s)
	if t == "" {
		return 0, bad
	}
	mult := int64(1)
	switch t[len(t)-1] {
	case 'k', 'K':
		mult = 1 << 10
	case 'm', 'M':
		mult = 1 << 20
	case 'g', 'G':
		mult = 1 << 30
	}
	if mult != 1 {
		t = t[:len(t)-1]
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || strings.ContainsAny(t, "eE+-") {
		return 0, bad
	}
	v := f * float64(mult)
	if v < 1 || v > math.MaxInt64/2 {
		return 0, fmt.Errorf("invalid bandwidth limit %q: must be at least 1 byte per second", s)
	}
	return int64(v), nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int":
			return "the integer " + n.Value
		case "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		case "!!null":
			return "an empty value"
		}
		return strconv.Quote(n.Value)
	}
	return "an empty document"
}
