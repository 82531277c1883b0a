// Package metrics exports a node agent's counters as Prometheus metrics:
// a custom Collector turns a Snapshot, taken at scrape time from the
// counters the dataplane, the BGP speaker and IPAM keep anyway, into
// constant metrics, so exporting costs the forwarding paths nothing. It
// also merges the expositions of several nodes into one, each metric with
// a node label, for `vrouter metrics` and `vrouter serve --metrics`.
//
// Names follow Prometheus' conventions: every name starts with vrouter_,
// counters end in _total, sizes are in bytes and times in seconds.
// Descriptions lists every metric.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/vrouter-lab/vrouter/encap"
	"github.com/vrouter-lab/vrouter/vrouter/bgp"
	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/kernel"
)

// Snapshot is what a node's metrics are made of, read at scrape time.
type Snapshot struct {
	// Dataplane is "userspace" or "kernel"; Tunnel says which tunl0
	// carries IPIP ("engine", "kernel", "userspace" or "").
	Dataplane, Tunnel string
	LinkUp            bool // the underlay link is up
	// Engine holds the userspace engine's counters (nil with the kernel
	// dataplane); Kernel the kernel dataplane's (nil with the engine).
	Engine *dataplane.EngineMetrics
	Kernel *kernel.Metrics
	// Peers are the BGP sessions, with their prefix counts.
	Peers []bgp.PeerStatus
	// Routes counts the FIB's routes by protocol and type.
	Routes map[RouteKind]int
	// StaleRoutes counts routes restored at a graceful restart and not
	// learned again yet.
	StaleRoutes int
	Workloads   int
	IPAM        IPAM
	// FailedParts names the parts (of Parts) that could not be read;
	// their metrics are missing.
	FailedParts []string
	// Router says the snapshot is a router forwarder's (`vrouter router
	// run`): it has an engine and routes but no BGP speaker, IPAM or
	// workloads, whose metrics are left out.
	Router bool
}

// Parts are the parts of a snapshot that may fail on their own.
var Parts = []string{"bgp", "ipam"}

// RouteKind is a FIB route's protocol and type, as `ip route` names them
// ("bird", "kernel"; "unicast", "blackhole").
type RouteKind struct{ Protocol, Type string }

// IPAM is the node's share of IPAM.
type IPAM struct {
	Blocks         int // blocks affine to the node
	BlockAddresses int // addresses in those blocks
	InUse          int // addresses assigned to the node's workloads (and tunl0), borrowed ones included
	Borrowed       int // of InUse, those in blocks affine to no node or another node
}

// SnapshotFunc takes a snapshot; the context ends with the scrape's
// timeout.
type SnapshotFunc func(context.Context) (*Snapshot, error)

// metric is one metric's description: its name, type and labels.
type metric struct {
	name, help string
	typ        prometheus.ValueType
	labels     []string
	desc       *prometheus.Desc
}

func newMetric(name string, typ prometheus.ValueType, help string, labels ...string) *metric {
	return &metric{name: name, help: help, typ: typ, labels: labels, desc: prometheus.NewDesc(name, help, labels, nil)}
}

// The metrics, in the order Descriptions lists them.
var (
	mInfo      = newMetric("vrouter_dataplane_info", prometheus.GaugeValue, "The node's dataplane and tunl0 (value 1).", "dataplane", "tunnel")
	mLinkUp    = newMetric("vrouter_underlay_link_up", prometheus.GaugeValue, "1 if the node's underlay link is up, else 0.")
	mWorkloads = newMetric("vrouter_workloads", prometheus.GaugeValue, "Workloads the node serves.")

	mForwarded  = newMetric("vrouter_packets_forwarded_total", prometheus.CounterValue, "Packets routed out of a port by the engine (IPIP-encapsulated ones are counted in vrouter_ipip_encapsulated_packets_total).")
	mDelivered  = newMetric("vrouter_packets_delivered_total", prometheus.CounterValue, "Packets for the node itself, handed to its kernel by the engine.")
	mFragmented = newMetric("vrouter_packets_fragmented_total", prometheus.CounterValue, "Packets the engine forwarded after fragmenting them (larger than the egress MTU, DF clear).")
	mDropped    = newMetric("vrouter_packets_dropped_total", prometheus.CounterValue, "Packets the engine did not forward, by reason (those answered with an ICMP error included).", "reason")
	mICMPSent   = newMetric("vrouter_icmp_errors_sent_total", prometheus.CounterValue, "ICMP errors the engine sent (time exceeded, unreachable, fragmentation needed, parameter problem).")
	mICMPNot    = newMetric("vrouter_icmp_errors_not_sent_total", prometheus.CounterValue, "ICMP errors the engine did not send: rate_limited, suppressed (about an ICMP error, a non-first fragment, a bad source) or unroutable (no way back to the source).", "reason")
	mEncap      = newMetric("vrouter_ipip_encapsulated_packets_total", prometheus.CounterValue, "Packets encapsulated in IPIP by the engine or the userspace tunl0 (the kernel's tunl0 counts in vrouter_port_transmit_packets_total{port=\"tunl0\"}).")
	mEncapDrop  = newMetric("vrouter_ipip_encap_dropped_packets_total", prometheus.CounterValue, "Packets for tunl0 that could not be encapsulated, by reason.", "reason")
	mDecap      = newMetric("vrouter_ipip_decapsulated_packets_total", prometheus.CounterValue, "IPIP packets decapsulated (from a lab node, to the node's address).")
	mDecapDrop  = newMetric("vrouter_ipip_decap_dropped_packets_total", prometheus.CounterValue, "IPIP packets not decapsulated, by reason (unknown_source: not from a known node).", "reason")

	mPolicyDenied  = newMetric("vrouter_policy_denied_packets_total", prometheus.CounterValue, "Packets network policy denied, by reason (ingress_deny_rule, ingress_default_deny, egress_deny_rule, egress_default_deny, revoked, malformed).", "reason")
	mPolicyAllowed = newMetric("vrouter_policy_allowed_flows_total", prometheus.CounterValue, "New flows network policy allowed (their later packets pass by connection tracking).")
	mPolicyHits    = newMetric("vrouter_policy_rule_hits_total", prometheus.CounterValue, "Flows a policy rule decided (Log rules: the flows they logged), by policy, direction and rule index.", "policy", "direction", "rule")
	mCTEntries     = newMetric("vrouter_conntrack_entries", prometheus.GaugeValue, "Flows in the engine's connection tracking table (expired ones until reused).")
	mCTEvictions   = newMetric("vrouter_conntrack_evictions_total", prometheus.CounterValue, "Live flows evicted from the full connection tracking table to make room.")

	mPortUp      = newMetric("vrouter_port_up", prometheus.GaugeValue, "1 if the port's link is up, else 0.", "port", "kind")
	mPortRx      = newMetric("vrouter_port_receive_packets_total", prometheus.CounterValue, "Packets (GSO super-packets count once in the engine) received on the port.", "port", "kind")
	mPortTx      = newMetric("vrouter_port_transmit_packets_total", prometheus.CounterValue, "Packets (GSO super-packets count once in the engine) sent on the port.", "port", "kind")
	mPortRxBytes = newMetric("vrouter_port_receive_bytes_total", prometheus.CounterValue, "Bytes of IP packets received on the port.", "port", "kind")
	mPortTxBytes = newMetric("vrouter_port_transmit_bytes_total", prometheus.CounterValue, "Bytes of IP packets sent on the port.", "port", "kind")
	mPortRxDrop  = newMetric("vrouter_port_receive_dropped_packets_total", prometheus.CounterValue, "Packets received on the port and dropped there, by reason.", "port", "kind", "reason")
	mPortTxDrop  = newMetric("vrouter_port_transmit_dropped_packets_total", prometheus.CounterValue, "Packets that should have left by the port and were dropped there, by reason.", "port", "kind", "reason")

	mRingFrames = newMetric("vrouter_fabric_ring_frames_total", prometheus.CounterValue, "Frames the engine's fabric port sent (tx) or received (rx) through shared-memory rings rather than its socket (a subset of vrouter_port_*_packets_total).", "port", "direction")
	mRingBytes  = newMetric("vrouter_fabric_ring_bytes_total", prometheus.CounterValue, "Bytes of IP packets the engine's fabric port sent (tx) or received (rx) through shared-memory rings.", "port", "direction")
	mRingFull   = newMetric("vrouter_fabric_ring_full_drops_total", prometheus.CounterValue, "Frames dropped because the shared-memory ring to the neighbour was full (a subset of vrouter_port_transmit_dropped_packets_total{reason=\"queue_full\"}).", "port")
	mRings      = newMetric("vrouter_fabric_rings", prometheus.GaugeValue, "Shared-memory rings the engine's fabric port has now: out to busy neighbours, in from them.", "port", "direction")

	mKernelResyncs = newMetric("vrouter_kernel_resyncs_total", prometheus.CounterValue, "Full resynchronisations of the kernel dataplane's routes with the kernel's table.")
	mKernelRoutes  = newMetric("vrouter_kernel_route_events_total", prometheus.CounterValue, "Routes the kernel dataplane restored (removed by someone else), removed (stray), adopted (left by an earlier agent) or claimed (adopted and wanted again).", "event")

	mSessions   = newMetric("vrouter_bgp_sessions", prometheus.GaugeValue, "BGP sessions by state.", "state")
	mPeerUp     = newMetric("vrouter_bgp_peer_up", prometheus.GaugeValue, "1 if the BGP session with the peer is Established, else 0.", "peer", "type")
	mPeerState  = newMetric("vrouter_bgp_peer_state", prometheus.GaugeValue, "The BGP session's state: 1 for the current one, 0 for the others.", "peer", "type", "state")
	mPeerSince  = newMetric("vrouter_bgp_peer_state_change_timestamp_seconds", prometheus.GaugeValue, "When the BGP session last changed state (Unix time, one-second resolution).", "peer")
	mPeerRecv   = newMetric("vrouter_bgp_peer_prefixes_received", prometheus.GaugeValue, "Prefixes the peer sent that are in its Adj-RIB-In.", "peer")
	mPeerAccept = newMetric("vrouter_bgp_peer_prefixes_accepted", prometheus.GaugeValue, "Prefixes from the peer accepted by policy.", "peer")
	mPeerAdv    = newMetric("vrouter_bgp_peer_prefixes_advertised", prometheus.GaugeValue, "Prefixes advertised to the peer.", "peer")
	mStale      = newMetric("vrouter_bgp_stale_routes", prometheus.GaugeValue, "Routes restored at a graceful restart and not learned again from BGP yet.")

	mRoutes = newMetric("vrouter_fib_routes", prometheus.GaugeValue, "Routes in the node's forwarding table, by protocol and type.", "protocol", "type")

	mBlocks     = newMetric("vrouter_ipam_blocks", prometheus.GaugeValue, "IPAM blocks affine to the node.")
	mBlockAddrs = newMetric("vrouter_ipam_block_addresses", prometheus.GaugeValue, "Addresses in the IPAM blocks affine to the node.")
	mInUse      = newMetric("vrouter_ipam_addresses_in_use", prometheus.GaugeValue, "Addresses assigned to the node (its workloads, tunl0), borrowed ones included.")
	mBorrowed   = newMetric("vrouter_ipam_addresses_borrowed", prometheus.GaugeValue, "Addresses assigned to the node from blocks not affine to it.")

	mScrapeErr = newMetric("vrouter_scrape_errors_total", prometheus.CounterValue, "Scrapes that could not read part of the node's state (BGP, IPAM); the agent's log says why.", "part")
)

// all is every metric of a node, in the order Descriptions lists them.
var all = []*metric{
	mInfo, mLinkUp, mWorkloads,
	mForwarded, mDelivered, mFragmented, mDropped, mICMPSent, mICMPNot,
	mEncap, mEncapDrop, mDecap, mDecapDrop,
	mPolicyDenied, mPolicyAllowed, mPolicyHits, mCTEntries, mCTEvictions,
	mPortUp, mPortRx, mPortTx, mPortRxBytes, mPortTxBytes, mPortRxDrop, mPortTxDrop,
	mRingFrames, mRingBytes, mRingFull, mRings,
	mKernelResyncs, mKernelRoutes,
	mSessions, mPeerUp, mPeerState, mPeerSince, mPeerRecv, mPeerAccept, mPeerAdv, mStale,
	mRoutes,
	mBlocks, mBlockAddrs, mInUse, mBorrowed,
	mScrapeErr,
}

// Description describes one metric.
type Description struct {
	Name, Type, Help string
	Labels           []string
}

// Descriptions lists every metric a node exports (besides the Go runtime's
// go_* and the process' process_* metrics).
func Descriptions() []Description {
	out := make([]Description, 0, len(all))
	for _, m := range all {
		t := "gauge"
		if m.typ == prometheus.CounterValue {
			t = "counter"
		}
		out = append(out, Description{Name: m.name, Type: t, Help: m.help, Labels: m.labels})
	}
	return out
}

// States are the BGP session states, as vrouter_bgp_sessions labels them.
var States = []string{bgp.StateIdle, bgp.StateConnect, bgp.StateActive, bgp.StateOpenSent, bgp.StateOpenConfirm, bgp.StateEstablished}

// Collector is a prometheus.Collector that takes a Snapshot at every
// scrape.
type Collector struct {
	snap    SnapshotFunc
	timeout time.Duration

	mu     sync.Mutex
	errors map[string]uint64 // failed parts of snapshots, by part
}

// NewCollector returns a collector taking its snapshots with fn, each
// within timeout (5 s if zero).
func NewCollector(fn SnapshotFunc, timeout time.Duration) *Collector {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Collector{snap: fn, timeout: timeout, errors: map[string]uint64{}}
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range all {
		ch <- m.desc
	}
}

// Collect takes a snapshot and sends its metrics. A snapshot that failed
// altogether is reported as an invalid metric (the scrape answers with
// the error); the parts a snapshot could not read are counted in
// vrouter_scrape_errors_total.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	s, err := c.snap(ctx)
	if s == nil || err != nil {
		if err == nil {
			err = errors.New("metrics: no snapshot")
		}
		ch <- prometheus.NewInvalidMetric(mInfo.desc, err)
		return
	}
	c.mu.Lock()
	for _, p := range s.FailedParts {
		c.errors[p]++
	}
	for _, p := range Parts {
		emit(ch, mScrapeErr, float64(c.errors[p]), p)
	}
	c.mu.Unlock()
	Write(s, ch)
}

// emit sends one metric; the label values are in m's order.
func emit(ch chan<- prometheus.Metric, m *metric, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(m.desc, m.typ, v, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Write sends the metrics of s.
func Write(s *Snapshot, ch chan<- prometheus.Metric) {
	emit(ch, mInfo, 1, s.Dataplane, s.Tunnel)
	emit(ch, mLinkUp, b2f(s.LinkUp))
	if s.Engine != nil {
		writeEngine(ch, s.Engine)
	}
	if s.Kernel != nil {
		writeKernel(ch, s.Kernel)
	}
	for k, n := range s.Routes {
		emit(ch, mRoutes, float64(n), k.Protocol, k.Type)
	}
	if s.Router {
		return
	}
	emit(ch, mWorkloads, float64(s.Workloads))
	writeBGP(ch, s)
	emit(ch, mBlocks, float64(s.IPAM.Blocks))
	emit(ch, mBlockAddrs, float64(s.IPAM.BlockAddresses))
	emit(ch, mInUse, float64(s.IPAM.InUse))
	emit(ch, mBorrowed, float64(s.IPAM.Borrowed))
}

// writePolicy emits the engine's policy and conntrack counters.
func writePolicy(ch chan<- prometheus.Metric, p *dataplane.PolicyMetrics) {
	for _, r := range dataplane.DeniedReasons() {
		emit(ch, mPolicyDenied, float64(p.Denied[r]), r)
	}
	emit(ch, mPolicyAllowed, float64(p.AllowedFlows))
	for id, n := range p.Rules {
		emit(ch, mPolicyHits, float64(n), id.Policy, strings.ToLower(string(id.Direction)), strconv.Itoa(id.Index))
	}
	emit(ch, mCTEntries, float64(p.Entries))
	emit(ch, mCTEvictions, float64(p.Evicted))
}

func writeEngine(ch chan<- prometheus.Metric, e *dataplane.EngineMetrics) {
	f := e.Forwarder
	emit(ch, mForwarded, float64(f.Forwarded))
	emit(ch, mDelivered, float64(f.Local))
	emit(ch, mFragmented, float64(f.NeedFragment))
	for r := dataplane.Reason(1); int(r) < dataplane.NumReasons; r++ {
		emit(ch, mDropped, float64(f.Drops[r]), r.String())
	}
	emit(ch, mDropped, float64(e.SegmentDrops), "segmentation_failed")
	emit(ch, mICMPSent, float64(f.ICMPErrors))
	emit(ch, mICMPNot, float64(f.ICMPRateLimited), "rate_limited")
	emit(ch, mICMPNot, float64(f.ICMPSuppressed), "suppressed")
	emit(ch, mICMPNot, float64(f.ICMPUnroutable), "unroutable")
	if e.Tunnel {
		emit(ch, mEncap, float64(f.Encapsulated))
		emit(ch, mEncapDrop, float64(e.EncapDrops), "error")
		writeDecap(ch, e.Decap)
	}
	writePolicy(ch, &e.Policy)
	for _, u := range e.Underlays {
		const kind = "underlay"
		st := u.Stats
		emit(ch, mPortUp, b2f(u.Up), u.Name, kind)
		emit(ch, mPortRx, float64(st.RxFrames), u.Name, kind)
		emit(ch, mPortTx, float64(st.TxFrames), u.Name, kind)
		emit(ch, mPortRxBytes, float64(st.RxBytes), u.Name, kind)
		emit(ch, mPortTxBytes, float64(st.TxBytes), u.Name, kind)
		for _, d := range []struct {
			reason string
			n      uint64
		}{
			{"link_down", st.RxDrops.LinkDown}, {"bad_frame", st.RxDrops.BadFrame}, {"too_big", st.RxDrops.TooBig},
		} {
			emit(ch, mPortRxDrop, float64(d.n), u.Name, kind, d.reason)
		}
		for _, d := range []struct {
			reason string
			n      uint64
		}{
			{"no_neighbor", st.TxDrops.NoNeighbor}, {"neighbor_down", st.TxDrops.NeighborDown},
			{"link_down", st.TxDrops.LinkDown}, {"loss", st.TxDrops.Loss}, {"queue_full", st.TxDrops.QueueFull},
			{"bad_frame", st.TxDrops.BadFrame}, {"error", st.TxDrops.Error},
		} {
			emit(ch, mPortTxDrop, float64(d.n), u.Name, kind, d.reason)
		}
		r := st.Ring
		emit(ch, mRingFrames, float64(r.TxFrames), u.Name, "tx")
		emit(ch, mRingFrames, float64(r.RxFrames), u.Name, "rx")
		emit(ch, mRingBytes, float64(r.TxBytes), u.Name, "tx")
		emit(ch, mRingBytes, float64(r.RxBytes), u.Name, "rx")
		emit(ch, mRingFull, float64(r.TxFull), u.Name)
		emit(ch, mRings, float64(r.Out), u.Name, "out")
		emit(ch, mRings, float64(r.In), u.Name, "in")
	}
}

// writeDecap sends the decapsulator's counters: "accepted" and the drop
// reasons (the ECN counters are not drops).
func writeDecap(ch chan<- prometheus.Metric, cs []encap.Counter) {
	for _, c := range cs {
		switch c.Name {
		case "accepted":
			emit(ch, mDecap, float64(c.Value))
		case "ecn_ce_marked", "ecn_not_ect_outer_ect":
		default:
			emit(ch, mDecapDrop, float64(c.Value), c.Name)
		}
	}
}

func writeKernel(ch chan<- prometheus.Metric, k *kernel.Metrics) {
	emit(ch, mKernelResyncs, float64(k.Resyncs))
	emit(ch, mKernelRoutes, float64(k.RoutesRestored), "restored")
	emit(ch, mKernelRoutes, float64(k.RoutesRemoved), "removed")
	emit(ch, mKernelRoutes, float64(k.RoutesAdopted), "adopted")
	emit(ch, mKernelRoutes, float64(k.RoutesClaimed), "claimed")
	if t := k.UserTunnel; t != nil {
		emit(ch, mEncap, float64(t.EncapPackets))
		emit(ch, mEncapDrop, float64(t.EncapNoRoute), "no_route")
		emit(ch, mEncapDrop, float64(t.EncapErrors), "error")
		writeDecap(ch, t.Decap)
		emit(ch, mDecapDrop, float64(t.DecapWriteErrors), "write_error")
	}
	for _, p := range k.Ports {
		emit(ch, mPortUp, b2f(p.Up), p.Name, p.Kind)
		emit(ch, mPortRx, float64(p.RxPackets), p.Name, p.Kind)
		emit(ch, mPortTx, float64(p.TxPackets), p.Name, p.Kind)
		emit(ch, mPortRxBytes, float64(p.RxBytes), p.Name, p.Kind)
		emit(ch, mPortTxBytes, float64(p.TxBytes), p.Name, p.Kind)
		emit(ch, mPortRxDrop, float64(p.RxDropped), p.Name, p.Kind, "dropped")
		emit(ch, mPortRxDrop, float64(p.RxErrors), p.Name, p.Kind, "error")
		emit(ch, mPortTxDrop, float64(p.TxDropped), p.Name, p.Kind, "dropped")
		emit(ch, mPortTxDrop, float64(p.TxErrors), p.Name, p.Kind, "error")
	}
}

func writeBGP(ch chan<- prometheus.Metric, s *Snapshot) {
	count := map[string]int{}
	for _, p := range s.Peers {
		count[p.State]++
		addr, typ := p.Address.String(), p.Type.String()
		emit(ch, mPeerUp, b2f(p.State == bgp.StateEstablished), addr, typ)
		for _, st := range States {
			emit(ch, mPeerState, b2f(p.State == st), addr, typ, st)
		}
		if !p.Since.IsZero() {
			emit(ch, mPeerSince, float64(p.Since.Unix()), addr)
		}
		emit(ch, mPeerRecv, float64(p.Received), addr)
		emit(ch, mPeerAccept, float64(p.Accepted), addr)
		emit(ch, mPeerAdv, float64(p.Advertised), addr)
	}
	for _, st := range States {
		emit(ch, mSessions, float64(count[st]), st)
	}
	emit(ch, mStale, float64(s.StaleRoutes))
}

// Handler serves the collector's metrics, the Go runtime's and the
// process' in Prometheus' text exposition format (or OpenMetrics /
// protobuf when the scraper asks). A scrape whose snapshot failed answers
// 500 with the error.
func Handler(c prometheus.Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
