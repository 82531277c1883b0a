package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
	"github.com/vrouter-lab/vrouter/vrouter/probe"
)

// link reports the state of the node's underlay link.
func (a *Agent) link() control.Link {
	l := control.Link{Interface: a.cfg.Interface, Network: a.cfg.Network, Up: a.dp.LinkUp()}
	if imp := a.dp.Impairment(); !imp.IsZero() {
		l.Impairment = &imp
	}
	return l
}

// serveControl serves the control API on the node's control socket until
// ctx ends.
func (a *Agent) serveControl(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		s, err := a.status(r.Context())
		control.Reply(w, s, err)
	})
	mux.HandleFunc("GET /v1/routes", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, fib.Format(a.dp.Routes()))
	})
	mux.HandleFunc("PUT /v1/pools", func(w http.ResponseWriter, r *http.Request) {
		var pools []config.Pool
		if err := json.NewDecoder(r.Body).Decode(&pools); err != nil {
			http.Error(w, "bad pools: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := a.setPools(r.Context(), pools); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/link", func(w http.ResponseWriter, r *http.Request) {
		control.Reply(w, a.link(), nil)
	})
	mux.HandleFunc("PUT /v1/link", func(w http.ResponseWriter, r *http.Request) {
		var l control.Link
		if err := control.Decode(r, &l); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if l.Interface != "" && l.Interface != a.cfg.Interface {
			http.Error(w, fmt.Sprintf("node %s has no interface %q (its underlay is %s)", a.cfg.Node, l.Interface, a.cfg.Interface), http.StatusBadRequest)
			return
		}
		a.dp.SetLinkUp(l.Up)
		a.log.Info("underlay link set", "interface", a.cfg.Interface, "up", l.Up)
		control.Reply(w, a.link(), nil)
	})
	mux.HandleFunc("PUT /v1/impairment", func(w http.ResponseWriter, r *http.Request) {
		var li control.LinkImpairment
		if err := control.Decode(r, &li); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if li.Interface != "" && li.Interface != a.cfg.Interface {
			http.Error(w, fmt.Sprintf("node %s has no interface %q (its underlay is %s)", a.cfg.Node, li.Interface, a.cfg.Interface), http.StatusBadRequest)
			return
		}
		if err := li.Impairment.Validate(); err != nil {
			http.Error(w, "impairment: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := a.dp.SetImpairment(li.Impairment); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.log.Info("underlay impairment set", "interface", a.cfg.Interface, "impairment", li.Impairment.String())
		control.Reply(w, a.link(), nil)
	})
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) {
		control.Reply(w, a.dp.Stats(), nil)
	})
	mux.Handle("GET /metrics", a.metricsHandler())
	a.servePolicies(mux)
	mux.HandleFunc("POST /v1/workloads", func(w http.ResponseWriter, r *http.Request) {
		var wl config.Workload
		if err := control.Decode(r, &wl); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		info, err := a.addWorkloadAPI(r.Context(), wl)
		control.Reply(w, info, err)
	})
	mux.HandleFunc("DELETE /v1/workloads/{name}", func(w http.ResponseWriter, r *http.Request) {
		control.Reply(w, struct{}{}, a.deleteWorkload(r.Context(), r.PathValue("name")))
	})
	mux.HandleFunc("POST /v1/workloads/{name}/probe", func(w http.ResponseWriter, r *http.Request) {
		var req probe.Request
		if err := control.Decode(r, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		res, err := a.probe(r.Context(), r.PathValue("name"), req)
		control.Reply(w, res, err)
	})
	mux.HandleFunc("GET /v1/workloads/{name}", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		info, ok := a.workloads[r.PathValue("name")]
		a.mu.Unlock()
		if !ok {
			control.Reply(w, nil, control.NotFoundf("no workload %s on node %s", r.PathValue("name"), a.cfg.Node))
			return
		}
		control.Reply(w, info, nil)
	})
	// Go's profiles (heap, CPU, goroutines) for diagnosing an agent, on
	// the control socket only (root's unix socket, never TCP):
	// curl --unix-socket SOCKET http://x/debug/pprof/heap > heap.pb.gz
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	socket := a.cfg.ControlSocket()
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	return control.Serve(ctx, socket, mux, a.log)
}
