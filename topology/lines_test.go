package topology

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf16"
)

// A problem's line counts the line breaks YAML itself honours: LF, CR LF
// and a bare CR each end one line, and so do NEL, LS and PS, which
// gopkg.in/yaml.v3 (a YAML 1.1 scanner) also takes as breaks. A file
// written with old Mac (CR) or Windows (CR LF) line endings, or a mix,
// gets the same line numbers as with Unix ones.
func TestLineEndings(t *testing.T) {
	// Line 4 has a bad blockSize, line 8 an unknown field.
	lines := []string{
		"name: t",
		"ipPools:",
		"  - name: p",
		"    blockSize: 33",
		"    cidr: 10.244.0.0/16",
		"networks: [{name: lan, cidr: 192.168.50.0/24}]",
		"nodes:",
		"  node1: {network: lan, address: 192.168.50.10, adress: x}",
		"",
	}
	wants := []want{
		{4, "ipPools[0].blockSize", "33 is outside 20-32"},
		{8, "nodes.node1.adress", "unknown field"},
	}
	// mixed cycles through the breaks given.
	mixed := func(breaks ...string) string {
		var b strings.Builder
		for i, l := range lines[:len(lines)-1] {
			b.WriteString(l)
			b.WriteString(breaks[i%len(breaks)])
		}
		return b.String()
	}
	for _, tc := range []struct{ name, data string }{
		{"LF", mixed("\n")},
		{"CR LF", mixed("\r\n")},
		{"CR", mixed("\r")},
		{"CR, LF and CR LF", mixed("\r", "\n", "\r\n")},
		{"CR LF and CR", mixed("\r\n", "\r")},
		{"NEL, LS and PS", mixed("\u0085", "\u2028", "\u2029", "\n")},
		{"UTF-16LE, CR", utf16le(mixed("\r"))},
		{"UTF-16LE, CR LF and NEL", utf16le(mixed("\r\n", "\u0085"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("crlf.yaml", []byte(tc.data))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse error %v, want a *ValidationError", err)
			}
			checkProblems(t, ve, wants)
			if n := yamlLines([]byte(tc.data)); n != len(lines) {
				t.Errorf("yamlLines = %d, want %d", n, len(lines))
			}
		})
	}
}

// YAML syntax errors and problems with the file as a whole count lines the
// same way. The last case is what FuzzParse found: a one-line file to
// bytes.Count("\n"), three lines to YAML, the scalar 0 on the third.
func TestLineEndingsWholeFile(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       want
		lines      int
	}{
		{"syntax error, CR", "name: t\rnodes:\r  node1:\r\tnetwork: lan\r", want{4, "", "invalid YAML: found character that cannot start any token"}, 5},
		{"syntax error, CR LF", "name: t\r\nnodes:\r\n  node1:\r\n\tnetwork: lan\r\n", want{4, "", "invalid YAML: found character that cannot start any token"}, 5},
		{"not a mapping, CR CR", " \r\r0", want{3, "", "a lab file is a YAML mapping"}, 3},
		{"not a mapping, CR LF CR", " \r\n\r0", want{3, "", "a lab file is a YAML mapping"}, 3},
		{"second document, CR", "name: t\r---\rname: u\r", want{2, "", "holds one YAML document"}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tc.data))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse error %v, want a *ValidationError", err)
			}
			checkProblems(t, ve, []want{tc.want})
			if n := yamlLines([]byte(tc.data)); n != tc.lines {
				t.Errorf("yamlLines = %d, want %d", n, tc.lines)
			}
		})
	}
}

// utf16le encodes s as UTF-16, little-endian, with a byte order mark.
func utf16le(s string) string {
	b := []byte{0xff, 0xfe}
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u), byte(u>>8))
	}
	return string(b)
}

// yamlLines counts the lines of data as gopkg.in/yaml.v3 does: after
// decoding UTF-16 (which it detects by the byte order mark), each LF, CR LF,
// lone CR, NEL, LS and PS ends a line. A file without a final break still
// has its last line.
func yamlLines(data []byte) int {
	var text []rune
	switch {
	case len(data) >= 2 && (data[0] == 0xff && data[1] == 0xfe || data[0] == 0xfe && data[1] == 0xff):
		le := data[0] == 0xff
		units := make([]uint16, 0, len(data)/2)
		for i := 2; i+1 < len(data); i += 2 {
			if le {
				units = append(units, uint16(data[i])|uint16(data[i+1])<<8)
			} else {
				units = append(units, uint16(data[i])<<8|uint16(data[i+1]))
			}
		}
		text = utf16.Decode(units)
	default:
		text = []rune(string(data))
	}
	n := 1
	for i, r := range text {
		switch r {
		case '\r':
			if i+1 < len(text) && text[i+1] == '\n' {
				continue // CR LF is one break, counted at its LF
			}
			n++
		case '\n', '\u0085', '\u2028', '\u2029':
			n++
		}
	}
	return n
}
