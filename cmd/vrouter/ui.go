package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/topology/ui"
)

// defaultUIAddr is where `vrouter ui` listens unless told otherwise.
const defaultUIAddr = "127.0.0.1:50080"

func newUICommand() *cobra.Command {
	var addr string
	var allowRemote bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "ui [--lab LAB] [--listen ADDR]",
		Short: "Serve a live page of a running lab for a browser",
		Long: `ui serves, until interrupted, a web page of a running lab at http://ADDR/:
its drawing (as 'vrouter graph -o html' draws it: networks, nodes,
routers, external routers, workloads, BGP sessions) kept live from the
agents and forwarders every --interval: each BGP session coloured by its
state (green Established, red dashed otherwise), each link up or down
(red dashed) or impaired (orange, with its impairment), each interface's
packet rates (received ↓, sent ↑), each workload's address. Click a node
or router for its route table and BGP status (an external router's from
its daemon's CLI). The page, its script and its stylesheet are in the
binary: the browser loads nothing from elsewhere.

ADDR must be a loopback address (127.0.0.1:PORT, [::1]:PORT or
localhost:PORT; port 0 picks a free one, printed): the page shows the
lab and nothing authenticates its reader. --allow-remote accepts any
address.`,
		Example: "  vrouter ui --lab calico-bgp\n  vrouter ui --listen 127.0.0.1:8080",
		Args:    cobra.NoArgs,
	}
	resolve := labNameFlag(cmd)
	cmd.Flags().StringVar(&addr, "listen", defaultUIAddr, "serve the page at http://ADDR/ (host:port, loopback unless --allow-remote)")
	cmd.Flags().BoolVar(&allowRemote, "allow-remote", false, "allow a --listen address other hosts can reach")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often the page is updated")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if addr == "" {
			return fmt.Errorf("--listen is empty: give host:port, e.g. --listen %s", defaultUIAddr)
		}
		if err := checkListenAddr("--listen", addr, allowRemote); err != nil {
			return err
		}
		if interval < 100*time.Millisecond {
			return fmt.Errorf("--interval %s: at least 100ms", interval)
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
			return fmt.Errorf("ui: cannot listen on %s (%w); pick another port with --listen 127.0.0.1:PORT", addr, err)
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		fmt.Fprintf(cmd.OutOrStdout(), "serving the live page of lab %s at http://%s/ (interrupt to stop)\n", name, ln.Addr())
		return serveUI(ctx, ln, ui.New(ui.LabSource{Name: name}, interval, nil))
	}
	return cmd
}

// serveUI serves the page on ln until ctx ends; the pages' event streams
// end with it.
func serveUI(ctx context.Context, ln net.Listener, s *ui.Server) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
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
