package topology

import (
	"errors"
	"unicode/utf8"
)

// maxEchoLen is how much of a name an error message repeats: enough to
// recognise it, never a screenful.
const maxEchoLen = 64

// Shorten returns s cut to a length fit for an error message, marked with
// "..." when it was cut. It never splits a UTF-8 sequence.
func Shorten(s string) string {
	if len(s) <= maxEchoLen {
		return s
	}
	cut := maxEchoLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// CheckLabName reports whether s may name a lab: a DNS label (lowercase
// letters, digits and '-', starting and ending with a letter or digit) of
// at most MaxLabNameLen characters. Every lab name that comes from a flag,
// a file or the state directory passes this check before it becomes part
// of a path or a namespace name, so none can climb out of StateRoot.
func CheckLabName(s string) error {
	if msg := checkName(s, MaxLabNameLen, "lab", ""); msg != "" {
		return errors.New(msg)
	}
	return nil
}
