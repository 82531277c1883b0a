package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/topology/lab"
)

// lockWait is how long a command that changes a lab waits for another one
// holding the lab (a deploy waits for BGP for up to a minute by default).
const lockWait = 3 * time.Minute

// lockLab takes the lock of the lab called name for this command, saying
// on stderr when it has to wait for another command.
func lockLab(cmd *cobra.Command, name string) (func(), error) {
	return lab.Lock(name, holder(), lockWait, cmd.ErrOrStderr())
}

// holder describes this command for a lock file: "deploy -t lab.yaml".
func holder() string {
	return strings.Join(os.Args[1:], " ")
}

// labNameFlag adds --lab and returns a function resolving it to a lab name:
// the named lab (checked), or the only deployed one.
func labNameFlag(cmd *cobra.Command) func() (string, error) {
	var name string
	cmd.Flags().StringVar(&name, "lab", "", "lab name (default: the only deployed lab)")
	return func() (string, error) {
		if name != "" {
			return name, topology.CheckLabName(name)
		}
		names, err := lab.List()
		if err != nil {
			return "", err
		}
		switch len(names) {
		case 0:
			return "", errors.New("no lab is deployed; start one with: vrouter deploy -t FILE")
		case 1:
			return names[0], nil
		}
		return "", fmt.Errorf("several labs are deployed (%s); say which with --lab", strings.Join(names, ", "))
	}
}

// labFlag adds --lab and returns a function resolving it: the named lab's
// state, or the only deployed lab's.
func labFlag(cmd *cobra.Command) func() (*lab.State, error) {
	resolve := labNameFlag(cmd)
	return func() (*lab.State, error) {
		name, err := resolve()
		if err != nil {
			return nil, err
		}
		return lab.Load(name)
	}
}

// lockedLabFlag is labFlag for commands that change a lab: the function
// also takes the lab's lock, and loads the state under it (another command
// may have changed it while this one waited). The caller calls unlock.
func lockedLabFlag(cmd *cobra.Command) func() (st *lab.State, unlock func(), err error) {
	resolve := labNameFlag(cmd)
	return func() (*lab.State, func(), error) {
		name, err := resolve()
		if err != nil {
			return nil, nil, err
		}
		unlock, err := lockLab(cmd, name)
		if err != nil {
			return nil, nil, err
		}
		st, err := lab.Load(name)
		if err != nil {
			unlock()
			return nil, nil, err
		}
		return st, unlock, nil
	}
}

// needsNoRoot lists the commands that do not touch namespaces or the state
// directory.
var needsNoRoot = map[string]bool{"ipam": true, "version": true, "demo": true, "help": true, "completion": true, "__complete": true, "__completeNoDesc": true}

// requireRoot refuses, once and clearly, to run a command that needs root
// as another user: without root every node looks down and every removal
// fails with a permission error.
func requireRoot(cmd *cobra.Command) error {
	for c := cmd; c != nil; c = c.Parent() {
		if needsNoRoot[c.Name()] {
			return nil
		}
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("vrouter must run as root (it creates network namespaces and keeps its state in %s): try sudo vrouter %s", topology.StateRoot, topology.Shorten(holder()))
	}
	return nil
}
