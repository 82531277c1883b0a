// Go listens with MPTCP by default since Go 1.24, and the kernel refuses
// TCP MD5 signatures (BGP passwords) on MPTCP sockets with ENOPROTOOPT.
// BGP wants plain TCP.

//go:debug multipathtcp=0

// Command vrouter is a Calico-style virtual router: it deploys multi-node
// routed labs on one machine, runs the per-node agent, and prints routing
// state the way ip, calicoctl and containerlab do.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// SIGINT and SIGTERM cancel the command's context: a command that
	// creates things stops creating and removes what it made.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if code, ok := runAsCNIPlugin(ctx, os.Args[0]); ok {
		stop()
		os.Exit(code)
	}
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	var exit exitError
	if errors.As(err, &exit) {
		os.Exit(int(exit))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
