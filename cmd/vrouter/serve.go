package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/metrics"
)

func newServeCommand() *cobra.Command {
	var addr string
	var allowRemote bool
	cmd := &cobra.Command{
		Use:   "serve --metrics ADDR",
		Short: "Serve a lab's metrics over HTTP for Prometheus",
		Long: `serve serves, until interrupted, every node's and router's Prometheus
metrics at http://ADDR/metrics: one exposition with a node label on every
sample, read from the agents and forwarders at each scrape (as 'vrouter
metrics' prints it), so a local Prometheus scrapes a whole lab as one
target. vrouter_node_up says which answered; nodes added or removed
later are followed.

ADDR must be a loopback address (127.0.0.1:PORT, [::1]:PORT or
localhost:PORT): the metrics say what runs in the lab and nothing
authenticates the scraper. --allow-remote accepts any address, such as
0.0.0.0:9091 for a Prometheus on another machine.`,
		Example: "  vrouter serve --metrics 127.0.0.1:9091",
		Args:    cobra.NoArgs,
	}
	resolve := labNameFlag(cmd)
	cmd.Flags().StringVar(&addr, "metrics", "", "serve the lab's metrics at http://ADDR/metrics (host:port, loopback unless --allow-remote)")
	cmd.Flags().BoolVar(&allowRemote, "allow-remote", false, "allow a --metrics address other hosts can reach")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if addr == "" {
			return errors.New("nothing to serve: give --metrics ADDR (e.g. --metrics 127.0.0.1:9091)")
		}
		if err := checkServeAddr(addr, allowRemote); err != nil {
			return err
		}
		name, err := resolve()
		if err != nil {
			return err
		}
		if _, err := lab.Load(name); err != nil {
			return err
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		fmt.Fprintf(cmd.OutOrStdout(), "serving the metrics of lab %s at http://%s/metrics\n", name, ln.Addr())
		return serveMetrics(ctx, ln, name)
	}
	return cmd
}

// checkServeAddr checks serve's --metrics address (checkListenAddr).
func checkServeAddr(addr string, allowRemote bool) error {
	return checkListenAddr("--metrics", addr, allowRemote)
}

// checkListenAddr accepts host:port with a loopback host, or any host
// with allowRemote; its errors name the flag that gave addr.
func checkListenAddr(flag, addr string, allowRemote bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %s: want host:port (e.g. 127.0.0.1:9091): %w", flag, addr, err)
	}
	if port == "" {
		return fmt.Errorf("%s %s: no port", flag, addr)
	}
	if allowRemote {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Unmap().IsLoopback() {
		return nil
	}
	what := host
	if host == "" {
		what = "every interface"
	}
	return fmt.Errorf("%s %s listens on %s, which other hosts may reach: use 127.0.0.1:%s, or --allow-remote", flag, addr, what, port)
}

// serveMetrics answers GET /metrics on ln with the lab's merged metrics
// until ctx ends.
func serveMetrics(ctx context.Context, ln net.Listener, name string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		st, err := lab.Load(name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		nodes, err := lab.Metrics(r.Context(), st)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		var buf bytes.Buffer
		if err := metrics.Merge(&buf, nodes); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write(buf.Bytes())
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "vrouter lab %s: metrics at /metrics\n", name)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
