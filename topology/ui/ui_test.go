package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology/graph"
)

// fakeSource is a lab of two nodes whose node1 link counters grow by 10
// packets received and 5 sent per sample, 1 s apart.
type fakeSource struct {
	mu sync.Mutex
	n  int
	at time.Time
}

func (f *fakeSource) Graph(context.Context) (*graph.Graph, error) {
	return &graph.Graph{
		Name:      "fake<lab>",
		Networks:  []graph.Network{{Name: "lan", CIDR: "192.168.50.0/24", MTU: 1500}},
		Nodes:     []graph.Node{{Name: "node1", Kind: graph.KindNode}, {Name: "node2", Kind: graph.KindNode}},
		Workloads: []graph.Workload{{Name: "web-1", Node: "node1"}},
		Links: []graph.Link{
			{Node: "node1", Network: "lan", Interface: "ens33", Address: "192.168.50.10"},
			{Node: "node2", Network: "lan", Interface: "ens33", Address: "192.168.50.11"},
		},
		Sessions: []graph.Session{{A: "node1", B: "node2", Type: "node-to-node mesh"}},
	}, nil
}

func (f *fakeSource) Sample(context.Context) (*Sample, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.at.IsZero() {
		f.at = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	}
	f.n++
	at := f.at.Add(time.Duration(f.n) * time.Second)
	return &Sample{
		Lab:  "fake",
		Time: at,
		Nodes: []NodeState{
			{Name: "node1", Kind: graph.KindNode, Up: true, Ready: true, Routes: 4},
			{Name: "node2", Kind: graph.KindNode, Error: "agent is not running"},
		},
		Links: []LinkState{
			{Node: "node1", Interface: "ens33", Network: "lan", Known: true, Up: true, RxPackets: uint64(100 + 10*f.n), TxPackets: uint64(50 + 5*f.n)},
			{Node: "node2", Interface: "ens33", Network: "lan"},
		},
		Sessions:  []SessionState{{A: "node1", B: "node2", Type: "iBGP node-to-node mesh", State: "Active"}},
		Workloads: []WorkloadState{{Name: "web-1", Node: "node1", Address: "10.244.1.1", State: "running"}},
	}, nil
}

func (f *fakeSource) Detail(_ context.Context, name string) (*Detail, error) {
	if name != "node1" {
		return nil, errors.New("lab fake has no node " + name)
	}
	return &Detail{Name: "node1", Kind: "calico", Routes: "10.244.2.0/26 via 192.168.50.11 dev ens33 proto bird\n", BGP: "vrouter process is running.\n"}, nil
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// The page holds the lab's drawing (names escaped) and loads its script
// and stylesheet from the server alone.
func TestPage(t *testing.T) {
	srv := httptest.NewServer(New(&fakeSource{}, time.Second, nil).Handler())
	defer srv.Close()
	resp, page := get(t, srv.URL+"/")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`<svg xmlns="http://www.w3.org/2000/svg" id="topology"`,
		`data-name="node1"`, `class="workload" id="wl-web-1"`, `<path class="session" data-a="node1" data-b="node2"`,
		`<g class="link" data-node="node2" data-network="lan">`,
		`vrouter lab fake&lt;lab&gt;`, `<script src="/assets/app.js"></script>`, `href="/assets/app.css"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(page, "fake<lab>") {
		t.Error("the lab's name is not escaped")
	}
	// Nothing from elsewhere: no absolute URL in a src or href.
	for _, bad := range []string{`src="http`, `href="http`, `src="//`, `href="//`} {
		if strings.Contains(page, bad) {
			t.Errorf("page loads something from elsewhere: %s", bad)
		}
	}
	for _, asset := range []string{"/assets/app.js", "/assets/app.css"} {
		resp, body := get(t, srv.URL+asset)
		if resp.StatusCode != http.StatusOK || len(body) < 500 {
			t.Errorf("GET %s: %s, %d bytes", asset, resp.Status, len(body))
		}
		if strings.Contains(body, "http://") && asset == "/assets/app.css" {
			t.Errorf("%s refers to another site", asset)
		}
	}
	if resp, _ := get(t, srv.URL+"/assets/nothing.js"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET a missing asset: %s", resp.Status)
	}
}

// Rates are the counters' growth per second between samples; the first
// sample has none, and counters that go backwards start again.
func TestStateRates(t *testing.T) {
	srv := httptest.NewServer(New(&fakeSource{}, time.Second, nil).Handler())
	defer srv.Close()
	state := func() Sample {
		t.Helper()
		_, body := get(t, srv.URL+"/api/state")
		var s Sample
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return s
	}
	s := state()
	if s.Links[0].RxRate != 0 || s.Sessions[0].State != "Active" || s.Nodes[1].Up {
		t.Errorf("first sample: %+v", s)
	}
	s = state()
	if l := s.Links[0]; l.RxRate != 10 || l.TxRate != 5 {
		t.Errorf("second sample: rates rx %v tx %v, want 10 and 5", l.RxRate, l.TxRate)
	}
	if l := s.Links[1]; l.Known || l.RxRate != 0 {
		t.Errorf("node2's link, whose node did not answer: %+v", l)
	}

	// Samples closer than minRateInterval keep the last rate; a counter
	// that went backwards starts again with no rate.
	srvr := New(nil, time.Second, nil)
	at := time.Now()
	sample := func(dt time.Duration, rx uint64) LinkState {
		sm := &Sample{Time: at.Add(dt), Links: []LinkState{{Node: "n", Interface: "e", Known: true, RxPackets: rx}}}
		srvr.rates(sm)
		return sm.Links[0]
	}
	sample(0, 100)
	if l := sample(time.Second, 300); l.RxRate != 200 {
		t.Errorf("rate after 1s: %v, want 200", l.RxRate)
	}
	if l := sample(time.Second+10*time.Millisecond, 400); l.RxRate != 200 {
		t.Errorf("rate 10ms later: %v, want the last one (200)", l.RxRate)
	}
	if l := sample(2*time.Second, 5); l.RxRate != 0 {
		t.Errorf("rate after the counter went back: %v, want 0", l.RxRate)
	}
	if l := sample(3*time.Second, 55); l.RxRate != 50 {
		t.Errorf("rate after restarting: %v, want 50", l.RxRate)
	}
}

// The event stream sends a sample at once and then every interval.
func TestEvents(t *testing.T) {
	srv := httptest.NewServer(New(&fakeSource{}, 50*time.Millisecond, nil).Handler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	var samples []Sample
	for len(samples) < 3 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d samples: %v", len(samples), err)
		}
		if line == "event: state\n" {
			data, err := r.ReadString('\n')
			if err != nil || !strings.HasPrefix(data, "data: ") {
				t.Fatalf("event without data: %q %v", data, err)
			}
			var s Sample
			if err := json.Unmarshal([]byte(strings.TrimPrefix(data, "data: ")), &s); err != nil {
				t.Fatal(err)
			}
			samples = append(samples, s)
		}
	}
	if samples[2].Links[0].RxRate != 10 {
		t.Errorf("third streamed sample's rate: %v, want 10", samples[2].Links[0].RxRate)
	}
}

// A node's details, and an unknown node's refusal.
func TestDetail(t *testing.T) {
	srv := httptest.NewServer(New(&fakeSource{}, time.Second, nil).Handler())
	defer srv.Close()
	resp, body := get(t, srv.URL+"/api/nodes/node1")
	var d Detail
	if err := json.Unmarshal([]byte(body), &d); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/nodes/node1: %s %v: %s", resp.Status, err, body)
	}
	if !strings.Contains(d.Routes, "proto bird") || d.Kind != "calico" {
		t.Errorf("detail: %+v", d)
	}
	if resp, body := get(t, srv.URL+"/api/nodes/nodeX"); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "no node nodeX") {
		t.Errorf("GET /api/nodes/nodeX: %s %s", resp.Status, body)
	}
}

// errSource cannot read its lab.
type errSource struct{ fakeSource }

func (*errSource) Sample(context.Context) (*Sample, error) {
	return nil, errors.New("lab gone is not deployed")
}

func TestStateError(t *testing.T) {
	srv := httptest.NewServer(New(&errSource{}, time.Second, nil).Handler())
	defer srv.Close()
	_, body := get(t, srv.URL+"/api/state")
	var s Sample
	if err := json.Unmarshal([]byte(body), &s); err != nil || s.Error != "lab gone is not deployed" {
		t.Errorf("state of a lab that cannot be read: %s (%v)", body, err)
	}
}

const exposition = `# HELP vrouter_port_receive_packets_total Packets received on the port.
# TYPE vrouter_port_receive_packets_total counter
vrouter_port_receive_packets_total{kind="underlay",port="ens33"} 42
vrouter_port_receive_packets_total{kind="underlay",port="eth1"} 7
# HELP vrouter_port_transmit_packets_total Packets sent on the port.
# TYPE vrouter_port_transmit_packets_total counter
vrouter_port_transmit_packets_total{kind="underlay",port="ens33"} 40
# HELP vrouter_workloads Workloads the node serves.
# TYPE vrouter_workloads gauge
vrouter_workloads 2
`

func TestPortPackets(t *testing.T) {
	got := portPackets(exposition)
	if got["ens33"] != [2]uint64{42, 40} || got["eth1"] != [2]uint64{7, 0} || len(got) != 2 {
		t.Errorf("portPackets = %v", got)
	}
	if got := portPackets("not an exposition {"); len(got) != 0 {
		t.Errorf("portPackets of garbage = %v", got)
	}
}

// FuzzPortPackets: any text gives counters or none, never a panic, and
// a port's counters are those its lines say.
func FuzzPortPackets(f *testing.F) {
	f.Add(exposition)
	f.Add("vrouter_port_receive_packets_total{port=\"a\"} 1e20\n")
	f.Add("vrouter_port_receive_packets_total{port=\"a\"} -3\nvrouter_port_receive_packets_total{port=\"a\"} 4\n")
	f.Fuzz(func(t *testing.T, text string) {
		for port := range portPackets(text) {
			if !strings.Contains(text, port) {
				t.Errorf("port %q is not in the text", port)
			}
		}
	})
}
