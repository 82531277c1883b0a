package topology

import (
	"fmt"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a lab file.
type Problem struct {
	// Line is the 1-based line the problem is on, or 0 when unknown
	// (some YAML syntax errors carry no line).
	Line int
	// Field is the path of the field concerned, like
	// "nodes.node1.address" or "ipPools[0].blockSize"; empty for problems
	// with the file as a whole, such as YAML syntax errors.
	Field string
	// Msg says what is wrong, and where it helps, how to fix it.
	Msg string
}

// format renders the problem as FILE:LINE: FIELD: MSG, leaving out the
// parts it does not have.
func (p Problem) format(file string) string {
	var b strings.Builder
	b.WriteString(file)
	if p.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(p.Line))
	}
	b.WriteString(": ")
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ValidationError lists every problem found in a lab file, in line order.
type ValidationError struct {
	// File is the name of the lab file, as given to Load or Parse.
	File string
	// Problems holds at least one problem.
	Problems []Problem
}

// maxShown is the most problems Error lists; Problems holds them all.
const maxShown = 100

// Error returns one line per problem, each FILE:LINE: FIELD: message; past
// the first 100, one last line says how many more there are.
func (e *ValidationError) Error() string {
	lines := make([]string, 0, min(len(e.Problems), maxShown+1))
	for _, p := range e.Problems[:min(len(e.Problems), maxShown)] {
		lines = append(lines, p.format(e.File))
	}
	if n := len(e.Problems) - maxShown; n > 0 {
		lines = append(lines, fmt.Sprintf("%s: ... and %d more problems", e.File, n))
	}
	return strings.Join(lines, "\n")
}
