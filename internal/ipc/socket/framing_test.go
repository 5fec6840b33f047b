package socket

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func readAll(t *testing.T, r *Reader) ([]string, error) {
	t.Helper()
	var got []string
	for {
		b, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return got, nil
			}
			return got, err
		}
		got = append(got, string(b))
	}
}

func TestReaderLines(t *testing.T) {
	long := strings.Repeat("x", 16)
	tests := []struct {
		name    string
		in      string
		max     int
		want    []string
		wantErr error
	}{
		{"lines", "a\nbb\nccc\n", 0, []string{"a", "bb", "ccc"}, nil},
		{"crlf", "a\r\nb\r\n", 0, []string{"a", "b"}, nil},
		{"last line without newline", "a\nb", 0, []string{"a", "b"}, nil},
		{"blank lines skipped", "\n\na\n\r\n\nb\n\n", 0, []string{"a", "b"}, nil},
		{"cr inside a line kept", "a\rb\n", 0, []string{"a\rb"}, nil},
		{"binary bytes", "\x00\xff\x01\n", 0, []string{"\x00\xff\x01"}, nil},
		{"empty", "", 0, nil, nil},
		{"exactly max", long + "\n", 16, []string{long}, nil},
		{"exactly max with crlf", long + "\r\n", 16, []string{long}, nil},
		{"exactly max at eof", long, 16, []string{long}, nil},
		{"over max", long + "y\nnext\n", 16, nil, ErrFrameTooLarge},
		{"over max at eof", long + "y", 16, nil, ErrFrameTooLarge},
		{"over max, long", strings.Repeat("z", 100000) + "\n", 16, nil, ErrFrameTooLarge},
		{"frames before an oversized one", "ok\n" + long + "yy\n", 16, []string{"ok"}, ErrFrameTooLarge},
	}
	for _, tc := range tests {
		for _, oneByte := range []bool{false, true} {
			name := tc.name
			var src io.Reader = strings.NewReader(tc.in)
			if oneByte {
				name += "/partial reads"
				src = iotest.OneByteReader(src)
			}
			t.Run(name, func(t *testing.T) {
				got, err := readAll(t, NewReader(src, Lines, tc.max))
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
					t.Fatalf("frames = %q, want %q", got, tc.want)
				}
			})
		}
	}
}

// A line longer than the internal buffer but within the limit is whole.
func TestReaderLongLine(t *testing.T) {
	line := strings.Repeat("0123456789", 20000) // 200 kB > 64 kB buffer
	got, err := readAll(t, NewReader(strings.NewReader(line+"\r\n"+line), Lines, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != line || got[1] != line {
		t.Fatalf("got %d frames of lengths %v", len(got), lens(got))
	}
}

func lens(ss []string) []int {
	var n []int
	for _, s := range ss {
		n = append(n, len(s))
	}
	return n
}

func lenFrame(s string) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(len(s)))
	return string(b[:]) + s
}

func TestReaderLength(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		max     int
		want    []string
		wantErr error
	}{
		{"frames", lenFrame("a") + lenFrame("with\nnewline") + lenFrame("c"), 0, []string{"a", "with\nnewline", "c"}, nil},
		{"zero-length skipped", lenFrame("") + lenFrame("x") + lenFrame(""), 0, []string{"x"}, nil},
		{"empty", "", 0, nil, nil},
		{"exactly max", lenFrame("12345678"), 8, []string{"12345678"}, nil},
		{"over max", lenFrame("a") + lenFrame("123456789"), 8, []string{"a"}, ErrFrameTooLarge},
		{"huge length", "\xff\xff\xff\xff", 0, nil, ErrFrameTooLarge},
		{"truncated header", lenFrame("a") + "\x00\x00", 0, []string{"a"}, io.ErrUnexpectedEOF},
		{"truncated body", lenFrame("a") + lenFrame("hello")[:6], 0, []string{"a"}, io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		for _, oneByte := range []bool{false, true} {
			name := tc.name
			var src io.Reader = strings.NewReader(tc.in)
			if oneByte {
				name += "/partial reads"
				src = iotest.OneByteReader(src)
			}
			t.Run(name, func(t *testing.T) {
				got, err := readAll(t, NewReader(src, Length, tc.max))
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
					t.Fatalf("frames = %q, want %q", got, tc.want)
				}
			})
		}
	}
}

func TestFrameTooLargeMessage(t *testing.T) {
	_, err := NewReader(strings.NewReader(lenFrame("123456789")), Length, 8).Next()
	if err == nil || err.Error() != "frame of 9 bytes is larger than the limit of 8 bytes" {
		t.Fatalf("err = %v", err)
	}
	_, err = NewReader(strings.NewReader("123456789\n"), Lines, 8).Next()
	if err == nil || err.Error() != "line longer than the limit of 8 bytes" {
		t.Fatalf("err = %v", err)
	}
}

func TestAppendFrameRoundTrip(t *testing.T) {
	for _, f := range []Framing{Lines, Length} {
		var buf bytes.Buffer
		msgs := []string{"one", "two words", "x"}
		for _, m := range msgs {
			if err := WriteFrame(&buf, f, []byte(m)); err != nil {
				t.Fatal(err)
			}
		}
		got, err := readAll(t, NewReader(&buf, f, 0))
		if err != nil || strings.Join(got, "|") != strings.Join(msgs, "|") {
			t.Fatalf("%s: got %q, %v", f, got, err)
		}
	}
	b, _ := AppendFrame(nil, Lines, []byte("ends\n"))
	if string(b) != "ends\n" {
		t.Fatalf("line frame ending in newline: %q", b)
	}
}

func TestParseFraming(t *testing.T) {
	for in, want := range map[string]Framing{"line": Lines, "lines": Lines, "": Lines, "len": Length, "length": Length} {
		if got, err := ParseFraming(in); err != nil || got != want {
			t.Errorf("ParseFraming(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseFraming("json"); err == nil {
		t.Error("ParseFraming(json): no error")
	}
}
