package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vrouter-lab/vrouter/pcap"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
)

// CaptureOptions says when a capture stops and whom to tell it has started.
type CaptureOptions struct {
	// Count stops the capture after this many packets; zero means no limit.
	Count int
	// Duration stops the capture after this long; zero means no limit.
	Duration time.Duration
	// Ready, if not nil, is called once every node on the network copies
	// its frames to the capture: nothing sent afterwards is missed.
	Ready func()
	// Bridge reads only the Linux bridge of a network with kernel-mode
	// nodes (as tcpdump -i br0 in its namespace would), not the fabric
	// of a mixed network's userspace members.
	Bridge bool
}

// captureReadyTimeout bounds how long Capture waits for the network's
// endpoints to notice its tap (inotify tells them at once; they also
// rescan every fabric.DefaultTapScanInterval).
const captureReadyTimeout = 10 * time.Second

// captureFlushInterval is how often a capture to a regular file flushes,
// so that the file is readable while the capture runs.
const captureFlushInterval = time.Second

// Networks returns the names of the lab's underlay networks, in file order.
func (s *State) Networks() []string {
	var out []string
	if s.Spec != nil {
		for _, n := range s.Spec.Networks {
			out = append(out, n.Name)
		}
	}
	for _, n := range s.Nodes {
		if !slices.Contains(out, n.Network) {
			out = append(out, n.Network)
		}
	}
	for _, r := range s.Routers {
		for _, n := range append([]string{r.Network}, routerNetworks(r)...) {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// CheckNetwork returns an error listing the lab's networks unless it has
// one called name.
func (s *State) CheckNetwork(name string) error {
	nets := s.Networks()
	if slices.Contains(nets, name) {
		return nil
	}
	return fmt.Errorf("lab %s has no network %q (its networks: %s)", s.Name, name, strings.Join(nets, ", "))
}

// Capture records every packet crossing the lab's underlay network to w as
// pcapng, one interface per sending node interface (named like
// node1/ens33; those of the network's nodes are declared up front, any
// other as it first appears), raw IPv4 packets (LINKTYPE_RAW). GSO
// super-packets are written whole, as tcpdump writes them on an interface
// with GRO. It stops when ctx ends, after opt.Count packets or after
// opt.Duration, flushes, and returns the number of packets written; a
// capture ended by ctx is not an error. When w is a pipe, terminal or
// other non-regular file, every packet is flushed as it is written, so
// that a reader such as `tshark -r -` sees it at once.
func Capture(ctx context.Context, st *State, network string, w io.Writer, opt CaptureOptions) (int, error) {
	if err := st.CheckNetwork(network); err != nil {
		return 0, err
	}
	if opt.Count < 0 || opt.Duration < 0 {
		return 0, errors.New("capture: count and duration must not be negative")
	}
	if st.Spec != nil && st.Spec.KernelNetwork(network) {
		return captureKernel(ctx, st, network, w, opt)
	}
	if opt.Bridge {
		return 0, fmt.Errorf("capture: network %s of lab %s has no kernel-mode node, so no bridge: capture it without --bridge", network, st.Name)
	}
	// The tap's socket goes in a node namespace of the network, whose
	// net.unix.max_dgram_qlen deploy has raised: in the root namespace a
	// socket queues only 11 datagrams and a capture under load misses
	// copies.
	var ns string
	var ifaces []string
	for _, n := range st.Nodes {
		if n.Network != network {
			continue
		}
		if ns == "" {
			ns = n.Namespace
		}
		ifaces = append(ifaces, n.Name+"/"+n.Interface)
	}
	for _, r := range st.Routers {
		if name, _, ok := r.InterfaceOn(network); ok {
			ifaces = append(ifaces, r.Name+"/"+name)
			if ns == "" {
				ns = r.Namespace
			}
		}
	}
	if ns == "" && len(st.Nodes) > 0 {
		ns = st.Nodes[0].Namespace
	}

	if opt.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opt.Duration)
		defer cancel()
	}

	tap, err := fabric.OpenTapWithOptions(fabricDir(st.Dir), network, fabric.TapOptions{Namespace: ns})
	if err != nil {
		return 0, fmt.Errorf("capture %s: %w", network, err)
	}
	defer tap.Close()
	rctx, cancel := context.WithTimeout(ctx, captureReadyTimeout)
	err = tap.WaitReady(rctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil // interrupted before it started
		}
		return 0, fmt.Errorf("capture %s: %w", network, err)
	}

	pw, stream, index, err := startPcapng(w, network, ifaces, opt)
	if err != nil {
		return 0, err
	}
	n := 0
	lastFlush := time.Now()
	var rec fabric.TapRecord
	for opt.Count == 0 || n < opt.Count {
		if err := tap.ReadInto(ctx, &rec); err != nil {
			if ctx.Err() != nil || errors.Is(err, fabric.ErrClosed) {
				break
			}
			pw.Close()
			return n, fmt.Errorf("capture %s: %w", network, err)
		}
		name := rec.Interface
		if name == "" {
			name = rec.From
		}
		id, ok := index[name]
		if !ok {
			if id, err = pw.AddInterface(name); err != nil {
				pw.Close()
				return n, fmt.Errorf("capture %s: %w", network, err)
			}
			index[name] = id
		}
		if err := pw.WritePacket(id, rec.Time, rec.Packet); err != nil {
			pw.Close()
			return n, fmt.Errorf("capture %s: write: %w", network, err)
		}
		n++
		if stream || time.Since(lastFlush) >= captureFlushInterval {
			if err := pw.Flush(); err != nil {
				pw.Close()
				return n, fmt.Errorf("capture %s: write: %w", network, err)
			}
			lastFlush = time.Now()
		}
	}
	if err := pw.Close(); err != nil {
		return n, fmt.Errorf("capture %s: write: %w", network, err)
	}
	return n, nil
}

// startPcapng writes the pcapng section of ifaces to w (at once when w is
// a pipe or terminal, so that a reader has it before the first packet),
// tells opt.Ready, and returns the writer, whether w is a stream, and each
// interface's index in the section.
func startPcapng(w io.Writer, network string, ifaces []string, opt CaptureOptions) (*pcap.Writer, bool, map[string]int, error) {
	pw, err := pcap.NewPcapngWriter(w, ifaces...)
	if err != nil {
		return nil, false, nil, fmt.Errorf("capture %s: %w", network, err)
	}
	stream := isStream(w)
	if stream && len(ifaces) > 0 {
		// Hand the reader the section header now, not with the first packet.
		if err := pw.Flush(); err != nil {
			return nil, false, nil, fmt.Errorf("capture %s: %w", network, err)
		}
	}
	if opt.Ready != nil {
		opt.Ready()
	}
	index := make(map[string]int, len(ifaces))
	for i, name := range ifaces {
		index[name] = i
	}
	return pw, stream, index, nil
}

// isStream reports whether w is a pipe, terminal, socket or anything else
// that is not a regular file (or an in-memory writer).
func isStream(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && !fi.Mode().IsRegular()
}
