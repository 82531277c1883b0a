package bgp

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// WriteStatus writes the BGP part of `calicoctl node status` for the given
// peers, in calicoctl's exact layout, so that `vrouter node status` reads
// like the real thing:
//
//	vrouter process is running.
//
//	IPv4 BGP status
//	+---------------+-------------------+-------+----------+-------------+
//	| PEER ADDRESS  |     PEER TYPE     | STATE |  SINCE   |    INFO     |
//	+---------------+-------------------+-------+----------+-------------+
//	| 192.168.50.11 | node-to-node mesh | up    | 07:35:01 | Established |
//	+---------------+-------------------+-------+----------+-------------+
//
//	IPv6 BGP status
//	No IPv6 peers found.
//
// The output ends with an empty line, as calicoctl's does. processName
// replaces calicoctl's "Calico". When running is false only
// "<processName> process is not running." is written.
//
// Each table row is what calicoctl derives from BIRD's `show protocols`:
// STATE is BIRD's protocol state ("up" when the session is Established,
// "start" while BIRD is trying to bring it up, "down" otherwise); SINCE is
// BIRD's time of the last protocol state change in its "iso short" format
// (15:04:05 when less than 20 hours before now, 2006-01-02 otherwise; times
// are shown in now's location); INFO is the BGP state followed by the last
// error, such as "Established", "Active Socket: Connection refused" or
// "Idle Received: Bad peer AS". Peers are listed by address, IPv4 peers in
// the first table and IPv6 peers in the second. Cells longer than 30
// characters wrap onto more lines, as calicoctl's table writer wraps them.
//
// WriteStatus returns the first error from w.
func WriteStatus(w io.Writer, processName string, running bool, peers []PeerStatus, now time.Time) error {
	bw := bufio.NewWriter(w)
	if !running {
		fmt.Fprintf(bw, "%s process is not running.\n", processName)
		return bw.Flush()
	}
	fmt.Fprintf(bw, "%s process is running.\n", processName)

	sorted := slices.Clone(peers)
	slices.SortStableFunc(sorted, func(a, b PeerStatus) int { return a.Address.Compare(b.Address) })
	for _, v := range []int{4, 6} {
		fmt.Fprintf(bw, "\nIPv%d BGP status\n", v)
		var rows [][]string
		for _, p := range sorted {
			if (v == 4) != p.Address.Unmap().Is4() {
				continue
			}
			rows = append(rows, []string{
				p.Address.Unmap().String(),
				p.Type.String(),
				birdProtoState(p.State),
				birdSince(p.Since, now),
				birdInfo(p.State, p.Info),
			})
		}
		if len(rows) == 0 {
			fmt.Fprintf(bw, "No IPv%d peers found.\n", v)
			continue
		}
		writeTable(bw, []string{"Peer address", "Peer type", "State", "Since", "Info"}, rows)
	}
	// calicoctl ends with an empty line of its own after the tables.
	fmt.Fprintln(bw)
	return bw.Flush()
}

// birdProtoState maps a BGP session state to the state of the BIRD protocol
// running it: BIRD's BGP protocol is "up" only while the session is
// Established and "start" while it is trying to establish it.
func birdProtoState(state string) string {
	switch state {
	case StateEstablished:
		return "up"
	case StateIdle, StateConnect, StateActive, StateOpenSent, StateOpenConfirm:
		return "start"
	}
	return "down"
}

// birdSince formats a time as BIRD's "timeformat protocol iso short" does:
// the time of day when less than 20 hours before now, the date otherwise.
func birdSince(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	t = t.In(now.Location())
	if now.Sub(t) < 20*time.Hour {
		return t.Format(time.TimeOnly)
	}
	return t.Format(time.DateOnly)
}

// birdInfo is BIRD's info column for a BGP protocol, the session state and
// the last error, as calicoctl rejoins it.
func birdInfo(state, info string) string {
	if state == "" {
		state = StateIdle
	}
	if info == "" || info == state {
		return state
	}
	return strings.Join(strings.Fields(state+" "+info), " ")
}

// maxCellWidth is the width beyond which the table writer calicoctl uses
// (github.com/olekukonko/tablewriter, v0.0.x) wraps a cell.
const maxCellWidth = 30

// numeric matches the cells that table writer aligns right; all others are
// aligned left.
var numeric = regexp.MustCompile(`^-?(?:\d{1,3}(?:,\d{3})*|\d+)(?:\.\d+)?$`)

// writeTable draws an ASCII table the way calicoctl's table writer does with
// its default settings: upper-case headers centred (an odd space goes to the
// right), cells padded by one space, cells wider than 30 characters wrapped
// with as little raggedness as possible, and a wrapped column at least 30
// wide.
func writeTable(w io.Writer, header []string, rows [][]string) {
	widths := make([]int, len(header))
	fit := func(col int, cell string) []string {
		lines, width := wrapCell(cell)
		widths[col] = max(widths[col], width)
		return lines
	}
	head := make([][]string, len(header))
	for i, h := range header {
		head[i] = fit(i, strings.ToUpper(h))
	}
	body := make([][][]string, len(rows))
	for r, row := range rows {
		body[r] = make([][]string, len(header))
		for i := range header {
			cell := ""
			if i < len(row) {
				cell = row[i]
			}
			body[r][i] = fit(i, cell)
		}
	}

	line := func() {
		var b strings.Builder
		b.WriteByte('+')
		for _, wd := range widths {
			b.WriteString(strings.Repeat("-", wd+2))
			b.WriteByte('+')
		}
		b.WriteByte('\n')
		io.WriteString(w, b.String())
	}
	printRow := func(cells [][]string, pad func(s string, width int) string) {
		height := 0
		for _, c := range cells {
			height = max(height, len(c))
		}
		for l := range height {
			var b strings.Builder
			b.WriteByte('|')
			for i, c := range cells {
				s := ""
				if l < len(c) {
					s = c[l]
				}
				b.WriteByte(' ')
				b.WriteString(pad(s, widths[i]))
				b.WriteString(" |")
			}
			b.WriteByte('\n')
			io.WriteString(w, b.String())
		}
	}

	line()
	printRow(head, padCenter)
	line()
	for _, cells := range body {
		printRow(cells, padCell)
	}
	line()
}

// wrapCell splits a cell into the lines the table shows and returns the
// width the cell claims for its column.
func wrapCell(s string) ([]string, int) {
	width := textWidth(s)
	if width <= maxCellWidth {
		return []string{s}, width
	}
	lines := wrapWords(strings.Split(s, " "), maxCellWidth)
	// The table writer keeps the column at least as wide as the limit it
	// wrapped to, however short the wrapped lines come out.
	width = maxCellWidth
	for _, l := range lines {
		width = max(width, textWidth(l))
	}
	return lines, width
}

// wrapWords breaks words into lines of at most limit characters (or the
// longest word, if longer) minimising the sum of the squares of each line's
// unused space, the last line excepted.
func wrapWords(words []string, limit int) []string {
	for _, w := range words {
		limit = max(limit, textWidth(w))
	}
	n := len(words)
	// cost[i] is the least raggedness of words[i:], next[i] where the line
	// starting at word i ends.
	cost := make([]int, n+1)
	next := make([]int, n+1)
	for i := n - 1; i >= 0; i-- {
		cost[i] = -1
		length := -1
		for j := i; j < n; j++ {
			length += 1 + textWidth(words[j])
			if length > limit {
				break
			}
			c := 0
			if j < n-1 {
				c = (limit-length)*(limit-length) + cost[j+1]
			}
			if cost[i] < 0 || c < cost[i] {
				cost[i], next[i] = c, j+1
			}
		}
	}
	var lines []string
	for i := 0; i < n; i = next[i] {
		lines = append(lines, strings.Join(words[i:next[i]], " "))
	}
	return lines
}

// textWidth is the number of characters in s; every character the status
// table holds is one column wide.
func textWidth(s string) int { return utf8.RuneCountInString(s) }

// padCenter centres s in width, the odd space going to the right.
func padCenter(s string, width int) string {
	gap := width - textWidth(s)
	if gap <= 0 {
		return s
	}
	return strings.Repeat(" ", gap/2) + s + strings.Repeat(" ", gap-gap/2)
}

// padCell aligns a body cell: numbers to the right, everything else to the
// left.
func padCell(s string, width int) string {
	gap := width - textWidth(s)
	if gap <= 0 {
		return s
	}
	if numeric.MatchString(strings.TrimSpace(s)) {
		return strings.Repeat(" ", gap) + s
	}
	return s + strings.Repeat(" ", gap)
}
