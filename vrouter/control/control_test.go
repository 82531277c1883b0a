package control

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/config"
)

// socketDir returns a temporary directory for control sockets.
func socketDir(t *testing.T) string {
	t.Helper()
	return t.TempDir()
}

// socket is node's control socket in dir, named as the lab names it.
func socket(dir, node string) string { return filepath.Join(dir, node+".sock") }

// A client whose agent is gone says so, names the node and its socket,
// and says how to start it again; the error matches ErrNotRunning (and
// the dial error), whether the socket file is missing or left behind by a
// killed agent (connections refused).
func TestClientAgentNotRunning(t *testing.T) {
	dir := socketDir(t)
	missing := socket(dir, "node2")

	refusing := socket(dir, "node3")
	ln, err := net.Listen("unix", refusing)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // as after kill -9
	ln.Close()
	if _, err := os.Stat(refusing); err != nil {
		t.Fatalf("the refusing socket file should stay: %v", err)
	}

	for _, tc := range []struct {
		name, socket, node string
		errno              syscall.Errno
	}{
		{"missing socket", missing, "node2", syscall.ENOENT},
		{"connection refused", refusing, "node3", syscall.ECONNREFUSED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewClient(tc.socket)
			if c.Name != tc.node {
				t.Errorf("client for %s: Name %q, want %q", tc.socket, c.Name, tc.node)
			}
			_, err := c.Status(context.Background())
			if !errors.Is(err, ErrNotRunning) || !errors.Is(err, tc.errno) {
				t.Fatalf("Status: %v; want ErrNotRunning and %v", err, tc.errno)
			}
			want := "node " + tc.node + ": agent is not running (no answer on " + tc.socket + "); start it with: vrouter node restart " + tc.node
			if err.Error() != want {
				t.Errorf("error:\n%s\nwant:\n%s", err, want)
			}
			// Every call says the same.
			if err := c.DeleteWorkload(context.Background(), "web-1"); err == nil || err.Error() != want {
				t.Errorf("DeleteWorkload: %v", err)
			}
			if err := WriteNodeStatus(new(strings.Builder), nil, err); err == nil || err.Error() != want {
				t.Errorf("WriteNodeStatus: %v, want the client's error as it is", err)
			}
		})
	}

	r := NewRouterClient(missing)
	_, err = r.Routes(context.Background())
	if !errors.Is(err, ErrNotRunning) || err.Error() != "forwarder of router node2 is not running (no answer on "+missing+")" {
		t.Errorf("router client: %v", err)
	}
}

// Serve answers on the socket until its context ends; the client maps
// the answers: JSON decoded, 404 as ErrNotFound, anything else an error
// with the server's text, and none of them ErrNotRunning.
func TestServeAndClient(t *testing.T) {
	dir := socketDir(t)
	path := socket(dir, "node1")
	// A socket file left by an earlier agent is replaced.
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		Reply(w, &Status{Node: "node1", Ready: true}, nil)
	})
	mux.HandleFunc("DELETE /v1/workloads/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") == "boom" {
			Reply(w, nil, errors.New("datastore on fire"))
			return
		}
		Reply(w, nil, NotFoundf("no workload %s on node node1", r.PathValue("name")))
	})
	mux.HandleFunc("PUT /v1/impairment", func(w http.ResponseWriter, r *http.Request) {
		var li LinkImpairment
		if err := Decode(r, &li); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if li.Interface == "kernel0" {
			http.Error(w, ErrImpairmentUnsupported.Error(), http.StatusBadRequest)
			return
		}
		Reply(w, &Link{Interface: li.Interface, Up: true, Impairment: &li.Impairment}, nil)
	})
	ctx, cancel := context.WithCancel(context.Background())
	if err := Serve(ctx, path, mux, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	c := NewClient(path)
	s, err := c.Status(context.Background())
	if err != nil || s.Node != "node1" || !s.Ready {
		t.Fatalf("Status: %+v, %v", s, err)
	}
	err = c.DeleteWorkload(context.Background(), "web-9")
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "no workload web-9 on node node1") {
		t.Errorf("delete unknown: %v", err)
	}
	imp := config.Impairment{Delay: 20 * time.Millisecond, Loss: 1}
	if l, err := c.SetImpairment(context.Background(), "ens33", imp); err != nil || l.Impairment == nil || *l.Impairment != imp {
		t.Errorf("SetImpairment: %+v, %v", l, err)
	}
	if _, err := c.SetImpairment(context.Background(), "kernel0", imp); !errors.Is(err, ErrImpairmentUnsupported) {
		t.Errorf("SetImpairment on a dataplane without impairments: %v, want ErrImpairmentUnsupported", err)
	}
	err = c.DeleteWorkload(context.Background(), "boom")
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "datastore on fire") {
		t.Errorf("delete failing: %v", err)
	}

	cancel()
	// Shut down: the socket goes, and the client says nothing runs.
	end := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Status(context.Background())
		if errors.Is(err, ErrNotRunning) {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("still answering after its context ended: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// node status ends with the line saying which tunl0 the node uses, or
// that none is.
func TestWriteNodeStatusTunnel(t *testing.T) {
	addr := netip.MustParseAddr("10.244.166.129")
	for _, tc := range []struct {
		tunnel string
		want   string
	}{
		{"", "IPIP tunnel: none (no IP pool uses IPIP)\n"},
		{TunnelKernel, "IPIP tunnel: tunl0 10.244.166.129/32 (kernel ipip module)\n"},
		{TunnelUserspace, "IPIP tunnel: tunl0 10.244.166.129/32 (userspace: TUN device and raw IPIP socket; the kernel has no ipip module)\n"},
		{TunnelEngine, "IPIP tunnel: tunl0 10.244.166.129/32 (userspace engine)\n"},
	} {
		s := &Status{Node: "node1", Tunnel: tc.tunnel, StaleRoutes: 1}
		if tc.tunnel != "" {
			s.TunnelAddress = addr
		}
		var b strings.Builder
		if err := WriteNodeStatus(&b, s, nil); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		// After calicoctl's tables (ending with an empty line), before
		// the graceful restart note.
		if !strings.Contains(out, "No IPv6 peers found.\n\n"+tc.want+"\nGraceful restart: 1 restored route") {
			t.Errorf("tunnel %q: node status\n%s\nwant the line %q after the tables", tc.tunnel, out, tc.want)
		}
	}
}
