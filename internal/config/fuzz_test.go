package config

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzPortSpecParse: Parse never panics; what it accepts is within 1..65535
// with First <= Last and only known set names; the canonical form of an
// accepted spec parses back to the same ranges and names.
func FuzzPortSpecParse(f *testing.F) {
	for _, s := range []string{
		"22,80,443", "1-1024", "top100", "top1000", "1-65535", "65535", " 22 , 80 ",
		"top100,22-25,8080", "", ",", "22,,80", "0", "65536", "1-", "-1", "5-3", "1-2-3",
		"+22", "0x16", "22.0", "٢٢", "top10", "TOP100", "9999999999999999999999",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ranges, named, err := PortSpec(s).Parse()
		if err != nil {
			if ranges != nil || named != nil {
				t.Fatalf("Parse(%q) returned values with error %v", s, err)
			}
			return
		}
		if len(ranges)+len(named) == 0 {
			t.Fatalf("Parse(%q) accepted nothing without an error", s)
		}
		var items []string
		for _, r := range ranges {
			if r.First < 1 || r.Last > 65535 || r.First > r.Last {
				t.Fatalf("Parse(%q): range %+v out of 1..65535 or reversed", s, r)
			}
			if r.First == r.Last {
				items = append(items, strconv.Itoa(r.First))
			} else {
				items = append(items, strconv.Itoa(r.First)+"-"+strconv.Itoa(r.Last))
			}
		}
		for _, n := range named {
			if n != PortsTop100 && n != PortsTop1000 {
				t.Fatalf("Parse(%q): unknown named set %q", s, n)
			}
			items = append(items, n)
		}
		canon := strings.Join(items, ",")
		r2, n2, err := PortSpec(canon).Parse()
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, s, err)
		}
		if !slices.Equal(r2, ranges) || !slices.Equal(n2, named) {
			t.Fatalf("round trip %q -> %q: got %v %v, want %v %v", s, canon, r2, n2, ranges, named)
		}
	})
}

// FuzzParseRange: ParseRange never panics; an accepted range has Start <= End,
// no NaN, infinities only where "~" or an empty end put them, and its
// canonical form parses back to the same range.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{
		"10", "10:", "~:20", "10:20", "@10:20", "@~:", ":", ":5", "", "@", "~", "20:10",
		"-5:-1", " 3 ", "1e308:", "NaN", "inf", "Inf:", "1:2:3", "@@1", "0x10", "-0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			if r != (Range{}) {
				t.Fatalf("ParseRange(%q) = %+v with error %v", s, r, err)
			}
			return
		}
		if math.IsNaN(r.Start) || math.IsNaN(r.End) || r.Start > r.End {
			t.Fatalf("ParseRange(%q) = %+v: NaN or start > end", s, r)
		}
		if math.IsInf(r.Start, 1) || math.IsInf(r.End, -1) {
			t.Fatalf("ParseRange(%q) = %+v: infinity on the wrong side", s, r)
		}
		canon := ""
		if r.Inside {
			canon = "@"
		}
		if math.IsInf(r.Start, -1) {
			canon += "~"
		} else {
			canon += strconv.FormatFloat(r.Start, 'g', -1, 64)
		}
		canon += ":"
		if !math.IsInf(r.End, 1) {
			canon += strconv.FormatFloat(r.End, 'g', -1, 64)
		}
		r2, err := ParseRange(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, s, err)
		}
		if r2 != r {
			t.Fatalf("round trip %q -> %q: got %+v, want %+v", s, canon, r2, r)
		}
		// Alert is the complement of "inside [Start, End]" unless Inside.
		for _, v := range []float64{r.Start, r.End, r.Start - 1, r.End + 1, 0} {
			in := v >= r.Start && v <= r.End
			if r.Alert(v) != (in == r.Inside) {
				t.Fatalf("%+v.Alert(%g) = %v", r, v, r.Alert(v))
			}
		}
	})
}
