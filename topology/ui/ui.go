// Package ui serves `vrouter ui`: a live page of a running lab in the
// browser. The page is topology/graph's SVG drawing of the lab (networks,
// nodes, routers, external routers, workloads, BGP sessions), which a small
// script embedded in the binary marks up from a stream of samples: each
// session coloured by its state, each link up or down with its
// impairment and its packet rates, each workload's address; clicking a
// node shows its route table and BGP status. Nothing is loaded from
// elsewhere: the page, its script and its stylesheet are in the binary
// (embed.FS).
//
// The server reads the lab through a Source (LabSource reads a deployed
// lab's agents and forwarders over their control sockets) and pushes a
// Sample every interval to each page as a server-sent event
// (GET /api/events); GET /api/state answers one, GET /api/nodes/{name} a
// node's routes and BGP status.
package ui

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/vrouter-lab/vrouter/topology/graph"
)

// Source is what the page shows: a lab's drawing, its state now, and a
// node's details.
type Source interface {
	// Graph returns the lab as drawn: it does not change while the lab
	// runs.
	Graph(ctx context.Context) (*graph.Graph, error)
	// Sample returns the lab's state now, with its links' packet
	// counters (the rates are the server's to compute).
	Sample(ctx context.Context) (*Sample, error)
	// Detail returns a node's or router's routes and BGP status.
	Detail(ctx context.Context, node string) (*Detail, error)
}

// Sample is the state of a running lab at one moment.
type Sample struct {
	Lab       string          `json:"lab"`
	Time      time.Time       `json:"time"`
	Nodes     []NodeState     `json:"nodes"`
	Links     []LinkState     `json:"links"`
	Sessions  []SessionState  `json:"sessions"`
	Workloads []WorkloadState `json:"workloads"`
	// Error is set when the lab could not be read at all (destroyed,
	// say); the rest is then empty.
	Error string `json:"error,omitempty"`
}

// NodeState is a node or router as its agent or forwarder reports it.
type NodeState struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // graph.KindNode, KindRouter or KindExternal
	// Up: its agent or forwarder answered.
	Up bool `json:"up"`
	// Ready: every BGP session Established and every remote block routed
	// (a router: always, once up).
	Ready  bool   `json:"ready"`
	Routes int    `json:"routes"`
	Error  string `json:"error,omitempty"`
}

// LinkState is one interface of a node or router on a network.
type LinkState struct {
	Node      string `json:"node"`
	Interface string `json:"interface"`
	Network   string `json:"network"`
	// Known: the node answered, so Up and the counters are real.
	Known bool `json:"known"`
	Up    bool `json:"up"`
	// Impairment is what `vrouter link set --delay ...` set, as it
	// prints it; "" for none.
	Impairment string `json:"impairment,omitempty"`
	// Packet counters since the node started, and the rates (packets
	// per second) the server computed from the previous sample.
	RxPackets uint64  `json:"rxPackets"`
	TxPackets uint64  `json:"txPackets"`
	RxRate    float64 `json:"rxRate"`
	TxRate    float64 `json:"txRate"`
}

// SessionState is one BGP session and its state as one of its ends
// reports it ("Established", "Active", ...; "unknown" when neither end
// answered).
type SessionState struct {
	A     string `json:"a"`
	B     string `json:"b"`
	Type  string `json:"type"` // graph.Session.Label: "iBGP node-to-node mesh", ...
	State string `json:"state"`
}

// WorkloadState is a workload, its address (from IPAM, as its node
// reports it) and whether its node serves it.
type WorkloadState struct {
	Name    string `json:"name"`
	Node    string `json:"node"`
	Address string `json:"address"`
	State   string `json:"state"` // running, down
}

// Detail is what clicking a node shows.
type Detail struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Routes is the node's forwarding table in `ip route` format.
	Routes string `json:"routes"`
	// BGP is the node's BGP status as `vrouter node status` prints it,
	// or where to look (an external router's daemon, a router without
	// BGP).
	BGP   string `json:"bgp"`
	Error string `json:"error,omitempty"`
}

//go:embed assets
var assets embed.FS

// Server serves the page of one lab.
type Server struct {
	src      Source
	interval time.Duration
	log      *slog.Logger
	page     *template.Template

	mu   sync.Mutex
	prev map[[2]string]counters // by node and interface
}

// counters are a link's packet counters at a time, and the rates last
// computed from them.
type counters struct {
	at             time.Time
	rx, tx         uint64
	rxRate, txRate float64
}

// minRateInterval is the shortest time between two samples a rate is
// computed over: samples closer together (two pages open) keep the last
// rate.
const minRateInterval = 300 * time.Millisecond

// New returns a server of src's page, sending a sample every interval.
func New(src Source, interval time.Duration, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	page := template.Must(template.ParseFS(assets, "assets/index.html"))
	return &Server{src: src, interval: interval, log: log, page: page, prev: map[[2]string]counters{}}
}

// Handler returns the page's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /api/state", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.sample(r.Context()))
	})
	mux.HandleFunc("GET /api/events", s.events)
	mux.HandleFunc("GET /api/nodes/{name}", func(w http.ResponseWriter, r *http.Request) {
		d, err := s.src.Detail(r.Context(), r.PathValue("name"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		writeJSON(w, d)
	})
	return mux
}

// index serves the page: the lab's drawing inline, for the script to mark
// up.
func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	g, err := s.src.Graph(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	var svg bytes.Buffer
	if err := graph.WriteSVG(&svg, g); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var page bytes.Buffer
	err = s.page.Execute(&page, struct {
		Lab        string
		SVG        template.HTML // made by graph.WriteSVG, which escapes every name
		IntervalMS int64
	}{g.Name, template.HTML(svg.String()), s.interval.Milliseconds()})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(page.Bytes())
}

// events streams a sample every interval as server-sent events ("state")
// until the page goes away.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		data, err := json.Marshal(s.sample(r.Context()))
		if err != nil {
			s.log.Error("ui: sample", "err", err)
			return
		}
		if _, err := w.Write(append(append([]byte("event: state\ndata: "), data...), "\n\n"...)); err != nil {
			return
		}
		flusher.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}

// sample reads the lab and computes its links' rates; a lab that cannot
// be read gives a sample with Error set.
func (s *Server) sample(ctx context.Context) *Sample {
	sm, err := s.src.Sample(ctx)
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return &Sample{Time: time.Now(), Error: "cancelled"}
		}
		return &Sample{Time: time.Now(), Error: err.Error()}
	}
	s.rates(sm)
	return sm
}

// rates sets each known link's rates from its counters in the previous
// sample. Counters that went backwards (a restarted agent) start again.
func (s *Server) rates(sm *Sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range sm.Links {
		l := &sm.Links[i]
		if !l.Known {
			continue
		}
		key := [2]string{l.Node, l.Interface}
		now := counters{at: sm.Time, rx: l.RxPackets, tx: l.TxPackets}
		p, ok := s.prev[key]
		dt := sm.Time.Sub(p.at)
		switch {
		case !ok || l.RxPackets < p.rx || l.TxPackets < p.tx:
		case dt < minRateInterval:
			l.RxRate, l.TxRate = p.rxRate, p.txRate
			continue // keep the older counters to measure from
		default:
			now.rxRate = float64(l.RxPackets-p.rx) / dt.Seconds()
			now.txRate = float64(l.TxPackets-p.tx) / dt.Seconds()
			l.RxRate, l.TxRate = now.rxRate, now.txRate
		}
		s.prev[key] = now
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(data)
}
