package bgp

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The seed's own `calicoctl node status` (node1 of the three-node lab),
// typed by hand: column widths 13, 17, 5, 10 and 11, headers centred with
// the odd space on the right, and the empty line calicoctl prints last.
const seedStatus = `Calico process is running.

IPv4 BGP status
+---------------+-------------------+-------+------------+-------------+
| PEER ADDRESS  |     PEER TYPE     | STATE |   SINCE    |    INFO     |
+---------------+-------------------+-------+------------+-------------+
| 192.168.50.11 | node-to-node mesh | up    | 2020-09-28 | Established |
| 192.168.50.12 | node-to-node mesh | up    | 2020-09-28 | Established |
+---------------+-------------------+-------+------------+-------------+

IPv6 BGP status
No IPv6 peers found.

`

func TestWriteStatusSeed(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	since := time.Date(2020, 9, 28, 9, 12, 40, 0, cst)
	now := time.Date(2020, 10, 19, 21, 30, 0, 0, cst) // the blog post's day
	// Out of order: WriteStatus sorts.
	peers := []PeerStatus{
		{Address: netip.MustParseAddr("192.168.50.12"), Type: Mesh, State: StateEstablished, Since: since, Info: StateEstablished},
		{Address: netip.MustParseAddr("192.168.50.11"), Type: Mesh, State: StateEstablished, Since: since, Info: StateEstablished},
	}
	var b bytes.Buffer
	if err := WriteStatus(&b, "Calico", true, peers, now); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != seedStatus {
		t.Errorf("got\n%s\nwant\n%s", got, seedStatus)
	}
}

func TestWriteStatusToday(t *testing.T) {
	const want = `vrouter process is running.

IPv4 BGP status
+---------------+-------------------+-------+----------+-------------+
| PEER ADDRESS  |     PEER TYPE     | STATE |  SINCE   |    INFO     |
+---------------+-------------------+-------+----------+-------------+
| 192.168.50.11 | node-to-node mesh | up    | 07:35:01 | Established |
| 192.168.50.12 | node-to-node mesh | up    | 07:35:01 | Established |
+---------------+-------------------+-------+----------+-------------+

IPv6 BGP status
No IPv6 peers found.

`
	since := time.Date(2025, 3, 1, 7, 35, 1, 0, time.UTC)
	peers := []PeerStatus{
		{Address: netip.MustParseAddr("192.168.50.11"), Type: Mesh, State: StateEstablished, Since: since, Info: StateEstablished},
		{Address: netip.MustParseAddr("192.168.50.12"), Type: Mesh, State: StateEstablished, Since: since, Info: StateEstablished},
	}
	var b bytes.Buffer
	if err := WriteStatus(&b, "vrouter", true, peers, since.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// A long INFO wraps as calicoctl's table writer wraps it (the column then
// is 30 wide); SINCE switches from time to date 20 hours back, as BIRD's
// "iso short" format does; IPv6 peers get their own table.
func TestWriteStatusWrapAndIPv6(t *testing.T) {
	const want = `vrouter process is running.

IPv4 BGP status
+---------------+-------------------+-------+----------+--------------------------------+
| PEER ADDRESS  |     PEER TYPE     | STATE |  SINCE   |              INFO              |
+---------------+-------------------+-------+----------+--------------------------------+
| 192.168.50.11 | node-to-node mesh | up    | 07:35:01 | Established                    |
| 192.168.50.12 | node-to-node mesh | start | 07:36:10 | Active Socket: Connection      |
|               |                   |       |          | refused                        |
+---------------+-------------------+-------+----------+--------------------------------+

IPv6 BGP status
+--------------+---------------+-------+------------+----------------------------+
| PEER ADDRESS |   PEER TYPE   | STATE |   SINCE    |            INFO            |
+--------------+---------------+-------+------------+----------------------------+
| fd00::1      | node specific | up    | 12:00:01   | Established                |
| fd00::2      | global        | start | 2020-10-18 | Idle Received: Bad peer AS |
+--------------+---------------+-------+------------+----------------------------+

`
	now := time.Date(2020, 10, 19, 8, 0, 0, 0, time.UTC)
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.DateTime, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	peers := []PeerStatus{
		{Address: netip.MustParseAddr("fd00::2"), Type: Global, State: StateIdle, Since: at("2020-10-18 12:00:00"), Info: "Received: Bad peer AS"},
		{Address: netip.MustParseAddr("192.168.50.12"), Type: Mesh, State: StateActive, Since: at("2020-10-19 07:36:10"), Info: "Socket: Connection refused"},
		{Address: netip.MustParseAddr("fd00::1"), Type: NodeSpecific, State: StateEstablished, Since: at("2020-10-18 12:00:01"), Info: StateEstablished},
		{Address: netip.MustParseAddr("192.168.50.11"), Type: Mesh, State: StateEstablished, Since: at("2020-10-19 07:35:01"), Info: StateEstablished},
	}
	var b bytes.Buffer
	if err := WriteStatus(&b, "vrouter", true, peers, now); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestWriteStatusNoPeersAndNotRunning(t *testing.T) {
	var b bytes.Buffer
	if err := WriteStatus(&b, "vrouter", true, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	const want = "vrouter process is running.\n\nIPv4 BGP status\nNo IPv4 peers found.\n\nIPv6 BGP status\nNo IPv6 peers found.\n\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}

	b.Reset()
	peers := []PeerStatus{{Address: netip.MustParseAddr("192.168.50.11"), State: StateEstablished}}
	if err := WriteStatus(&b, "vrouter", false, peers, time.Now()); err != nil {
		t.Fatal(err)
	}
	if b.String() != "vrouter process is not running.\n" {
		t.Errorf("got %q", b.String())
	}
}

type failWriter struct{}

var errFail = errors.New("disk full")

func (failWriter) Write([]byte) (int, error) { return 0, errFail }

func TestWriteStatusWriteError(t *testing.T) {
	if err := WriteStatus(failWriter{}, "vrouter", true, nil, time.Now()); !errors.Is(err, errFail) {
		t.Errorf("got %v, want %v", err, errFail)
	}
}

func TestWrapCell(t *testing.T) {
	for _, c := range []struct {
		in    string
		want  []string
		width int
	}{
		{"Established", []string{"Established"}, 11},
		{"Active Socket: Connection refused", []string{"Active Socket: Connection", "refused"}, 30},
		{"Idle BGP Error: Unsupported optional parameter", []string{"Idle BGP Error: Unsupported", "optional parameter"}, 30},
		// A word longer than 30 widens the column to itself.
		{"Active Socket: Averyveryveryverylongerrorwordindeed", []string{"Active Socket:", "Averyveryveryverylongerrorwordindeed"}, 36},
	} {
		got, width := wrapCell(c.in)
		if strings.Join(got, "|") != strings.Join(c.want, "|") || width != c.width {
			t.Errorf("wrapCell(%q) = %q, %d; want %q, %d", c.in, got, width, c.want, c.width)
		}
	}
}

// wrapWords finds the least ragged breaking, checked against every
// possible breaking of random texts.
func TestWrapWordsMinimal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		words := make([]string, 1+rng.IntN(9))
		for i := range words {
			words[i] = strings.Repeat("x", 1+rng.IntN(12))
		}
		const limit = 20
		got := wrapWords(words, limit)
		if strings.Join(got, " ") != strings.Join(words, " ") {
			t.Fatalf("wrapWords(%q) = %q: words lost or reordered", words, got)
		}
		if c := raggedness(got, limit); c != bestRaggedness(words, limit) {
			t.Fatalf("wrapWords(%q) = %q, raggedness %d; best is %d", words, got, c, bestRaggedness(words, limit))
		}
	}
}

func raggedness(lines []string, limit int) int {
	c := 0
	for _, l := range lines[:len(lines)-1] {
		if len(l) > limit {
			return 1 << 30
		}
		c += (limit - len(l)) * (limit - len(l))
	}
	if len(lines[len(lines)-1]) > limit {
		return 1 << 30
	}
	return c
}

func bestRaggedness(words []string, limit int) int {
	best := 1 << 30
	// Bit i of mask set: a line break after word i.
	for mask := 0; mask < 1<<(len(words)-1); mask++ {
		var lines []string
		start := 0
		for i := range words {
			if i == len(words)-1 || mask&(1<<i) != 0 {
				lines = append(lines, strings.Join(words[start:i+1], " "))
				start = i + 1
			}
		}
		best = min(best, raggedness(lines, limit))
	}
	return best
}
