package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

// On a terminal each phase is drawn, redrawn under the progress lines
// written meanwhile, and marked done (or failed) with its time.
func TestPhasesOnTerminal(t *testing.T) {
	var out bytes.Buffer
	p := newPhases(&out, true)
	p.Phase(1, 2, "plan")
	p.Phase(2, 2, "start: 1 agent")
	if _, err := p.Write([]byte("node node1: agent started\n")); err != nil {
		t.Fatal(err)
	}
	p.Done(errors.New("boom"))
	want := regexp.MustCompile(`^… \[1/2\] plan\r\033\[K✔ \[1/2\] plan \([0-9.]+[mµn]?s\)\n` +
		`… \[2/2\] start: 1 agent\r\033\[Knode node1: agent started\n… \[2/2\] start: 1 agent` +
		`\r\033\[K✘ \[2/2\] start: 1 agent \([0-9.]+[mµn]?s\)\n$`)
	if !want.Match(out.Bytes()) {
		t.Errorf("drawn:\n%q", out.String())
	}
	p.Done(nil) // nothing under way: nothing drawn
	if strings.Count(out.String(), "✘") != 1 || strings.Count(out.String(), "✔") != 1 {
		t.Errorf("a phase ended twice:\n%q", out.String())
	}
}

// Not on a terminal, only the progress lines pass, as they always did.
func TestPhasesNotOnTerminal(t *testing.T) {
	var out bytes.Buffer
	p := newPhases(&out, false)
	p.Phase(1, 4, "plan")
	_, _ = p.Write([]byte("node node1: agent started\n"))
	p.Done(nil)
	if out.String() != "node node1: agent started\n" {
		t.Errorf("not on a terminal: %q", out.String())
	}
}

func TestBoxTable(t *testing.T) {
	var out bytes.Buffer
	if err := writeBoxTable(&out, []string{"NAME", "STATE"}, [][]string{{"node1", "running"}, {"wéb-1", "link down"}}); err != nil {
		t.Fatal(err)
	}
	want := `╭───────┬───────────╮
│ NAME  │ STATE     │
├───────┼───────────┤
│ node1 │ running   │
│ wéb-1 │ link down │
╰───────┴───────────╯
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}

// watchEvery draws at once and every interval until the context ends:
// on a terminal after clearing the screen, otherwise after a time line.
func TestWatchEvery(t *testing.T) {
	for _, terminal := range []bool{false, true} {
		var out bytes.Buffer
		ctx, cancel := context.WithCancel(context.Background())
		n := 0
		start := time.Now()
		err := watchEvery(ctx, &out, terminal, 20*time.Millisecond, func() error {
			n++
			out.WriteString("table\n")
			if n == 3 {
				cancel()
			}
			return nil
		})
		if err != nil || n != 3 {
			t.Fatalf("terminal %v: %d draws, %v", terminal, n, err)
		}
		if time.Since(start) < 40*time.Millisecond {
			t.Errorf("terminal %v: three draws in %s, want one every 20ms", terminal, time.Since(start))
		}
		clears := strings.Count(out.String(), "\033[H\033[2J")
		stamps := len(regexp.MustCompile(`(?m)^--- \d\d:\d\d:\d\d$`).FindAllString(out.String(), -1))
		if terminal && (clears != 3 || stamps != 0) || !terminal && (clears != 0 || stamps != 3) {
			t.Errorf("terminal %v: %d screen clears, %d time lines:\n%q", terminal, clears, stamps, out.String())
		}
	}
	// A failing draw ends the watch with its error.
	boom := errors.New("lab gone")
	if err := watchEvery(context.Background(), &bytes.Buffer{}, false, time.Millisecond, func() error { return boom }); !errors.Is(err, boom) {
		t.Errorf("watch with a failing draw: %v", err)
	}
}
