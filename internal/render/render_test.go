package render

import (
	"bytes"
	"strings"
	"testing"
)

func TestTable(t *testing.T) {
	tb := NewTable("name", "status", "detail")
	tb.StatusColumn = 1
	tb.Add("web1", "OK", "all good")
	tb.Add("db", "CRITICAL", "line1\nline2\twith tab")

	tests := []struct {
		name string
		mode Mode
		want string
	}{
		{"piped", Mode{}, "web1\tOK\tall good\ndb\tCRITICAL\tline1 line2 with tab\n"},
		{"tty", Mode{TTY: true}, "NAME  STATUS    DETAIL\nweb1  OK        all good\ndb    CRITICAL  line1 line2 with tab\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tb.WriteText(&b, tt.mode); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got\n%q\nwant\n%q", b.String(), tt.want)
			}
		})
	}
}

func TestTableColorOnlyOnTTY(t *testing.T) {
	tb := NewTable("status")
	tb.StatusColumn = 0
	tb.Add("CRITICAL")
	var b bytes.Buffer
	if err := tb.WriteText(&b, Mode{TTY: true, Color: true}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "\x1b[31mCRITICAL\x1b[0m") {
		t.Errorf("want red CRITICAL, got %q", b.String())
	}
	b.Reset()
	if err := tb.WriteText(&b, Mode{TTY: false, Color: true}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "\x1b[") {
		t.Errorf("piped output must not contain escape codes: %q", b.String())
	}
}

func TestRecord(t *testing.T) {
	var r Record
	r.Set("version", "1.2.3")
	r.Set("go", "go1.26")
	var b bytes.Buffer
	if err := r.WriteText(&b, Mode{}); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "version\t1.2.3\ngo\tgo1.26\n"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
	b.Reset()
	if err := r.WriteText(&b, Mode{TTY: true}); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "version:  1.2.3\ngo:       go1.26\n"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
}

func TestParseFormat(t *testing.T) {
	if f, err := ParseFormat("JSON"); err != nil || f != JSON {
		t.Errorf("ParseFormat(JSON) = %q, %v", f, err)
	}
	_, err := ParseFormat("xml")
	if err == nil || !strings.Contains(err.Error(), "text, json") {
		t.Errorf("want error listing choices, got %v", err)
	}
	if f, err := ParseFormat("tap", Text, JSON, "tap"); err != nil || f != "tap" {
		t.Errorf("extra formats: %q %v", f, err)
	}
}

func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, map[string]string{"a": "<b>"}); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "{\n  \"a\": \"<b>\"\n}\n"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
}
