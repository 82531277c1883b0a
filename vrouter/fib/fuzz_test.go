package fib

import "testing"

// FuzzParse checks that Parse never panics and that every route it accepts
// prints as text that parses back to the same route and the same text. The
// seed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, line string) {
		_, _ = ParseAll(line)
		r, err := Parse(line)
		if err != nil {
			return
		}
		s := r.String()
		r2, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q) = %#v, but Parse of its String %q: %v", line, r, s, err)
		}
		if r2 != r {
			t.Fatalf("Parse(%q) = %#v\nParse(%q) = %#v", line, r, s, r2)
		}
		if s2 := r2.String(); s2 != s {
			t.Fatalf("String changed on round trip: %q, then %q", s, s2)
		}
		if err := NewTable().Insert(r); err != nil {
			t.Fatalf("Parse(%q) = %#v, which Table rejects: %v", line, r, err)
		}
	})
}
