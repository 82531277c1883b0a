package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// writesToTerminal reports whether w is a terminal (isTerminal).
func writesToTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminal(f)
}

// phases draws the progress of deploy's or destroy's phases on a
// terminal: the current phase on a line of its own, redrawn below any
// other line written through it, marked done with its time when the next
// begins. Not on a terminal it draws nothing and passes lines through, so
// that scripts and tests see the plain progress lines alone.
type phases struct {
	mu      sync.Mutex
	out     io.Writer
	on      bool
	current string // the line of the phase under way ("" none)
	started time.Time
}

// newPhases returns the progress display on out, drawn when on.
func newPhases(out io.Writer, on bool) *phases {
	return &phases{out: out, on: on}
}

// Write writes progress lines above the current phase's line.
func (p *phases) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.on || p.current == "" {
		return p.out.Write(b)
	}
	if _, err := io.WriteString(p.out, "\r\033[K"); err != nil {
		return 0, err
	}
	n, err := p.out.Write(b)
	if err != nil {
		return n, err
	}
	_, err = io.WriteString(p.out, "… "+p.current)
	return n, err
}

// Phase ends the phase under way and draws the one beginning (a
// lab.PhaseFunc).
func (p *phases) Phase(n, of int, what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.on {
		return
	}
	p.end("✔")
	p.current = fmt.Sprintf("[%d/%d] %s", n, of, what)
	p.started = time.Now()
	fmt.Fprint(p.out, "… "+p.current)
}

// Done ends the phase under way: done if err is nil, failed otherwise.
func (p *phases) Done(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.on {
		return
	}
	mark := "✔"
	if err != nil {
		mark = "✘"
	}
	p.end(mark)
}

// end marks the current phase's line and leaves it.
func (p *phases) end(mark string) {
	if p.current == "" {
		return
	}
	fmt.Fprintf(p.out, "\r\033[K%s %s (%s)\n", mark, p.current, time.Since(p.started).Round(time.Millisecond))
	p.current = ""
}

// writeBoxTable writes a table with borders drawn around and between its
// columns and under its header, as containerlab prints its summary.
func writeBoxTable(w io.Writer, header []string, rows [][]string) error {
	widths := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	rule := func(left, mid, right string) {
		b.WriteString(left)
		for i, wd := range widths {
			if i > 0 {
				b.WriteString(mid)
			}
			b.WriteString(strings.Repeat("─", wd+2))
		}
		b.WriteString(right + "\n")
	}
	line := func(r []string) {
		b.WriteString("│")
		for i, wd := range widths {
			c := ""
			if i < len(r) {
				c = r[i]
			}
			b.WriteString(" " + c + strings.Repeat(" ", wd-utf8.RuneCountInString(c)) + " │")
		}
		b.WriteString("\n")
	}
	rule("╭", "┬", "╮")
	line(header)
	rule("├", "┼", "┤")
	for _, r := range rows {
		line(r)
	}
	rule("╰", "┴", "╯")
	_, err := io.WriteString(w, b.String())
	return err
}
