package render

import "strings"

// ANSI SGR codes used by netops.
const (
	Bold   = "1"
	Red    = "31"
	Green  = "32"
	Yellow = "33"
	Blue   = "34"
	Gray   = "90"
)

// Style wraps s in the given SGR code when color is on.
func Style(color bool, code, s string) string {
	if !color || s == "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// Status colors a status word: OK green, WARNING yellow, CRITICAL/FAILED/ERROR red,
// UNKNOWN gray. Other words are left as they are.
func Status(color bool, s string) string {
	switch strings.ToUpper(s) {
	case "OK", "PASS", "PASSED", "SUCCESS", "OPEN", "HELD":
		return Style(color, Green, s)
	case "WARNING", "WARN", "WAITING":
		return Style(color, Yellow, s)
	case "CRITICAL", "CRIT", "FAILED", "FAIL", "ERROR":
		return Style(color, Red, s)
	case "UNKNOWN", "SKIPPED":
		return Style(color, Gray, s)
	}
	return s
}
