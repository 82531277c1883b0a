package agent

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
)

// addWorkloadAPI adds a workload asked for through the control API and
// remembers it for the next agent.
func (a *Agent) addWorkloadAPI(ctx context.Context, w config.Workload) (*control.WorkloadInfo, error) {
	info, err := a.addWorkload(ctx, w)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	w.Address, w.PodInterface = info.Address, info.PodInterface
	a.added[w.Name] = w
	a.mu.Unlock()
	a.saveWorkloads()
	return info, nil
}

// saveWorkloads writes the workloads added through the control API.
func (a *Agent) saveWorkloads() {
	a.saveMu.Lock()
	defer a.saveMu.Unlock()
	a.mu.Lock()
	out := make([]config.Workload, 0, len(a.added))
	for _, w := range a.added {
		out = append(out, w)
	}
	a.mu.Unlock()
	slices.SortFunc(out, func(x, y config.Workload) int { return strings.Compare(x.Name, y.Name) })
	data, err := json.MarshalIndent(out, "", "  ")
	if err == nil {
		path := a.cfg.WorkloadsFile()
		tmp := path + ".tmp"
		if err = os.WriteFile(tmp, append(data, '\n'), 0o600); err == nil {
			err = os.Rename(tmp, path)
		}
	}
	if err != nil {
		a.log.Error("save the workloads added through the control API", "err", err)
	}
}

// restoreWorkloads serves again the workloads an earlier agent of this
// node added through its control API and the config does not list. One
// whose namespace is gone (its pod ended while no agent ran) is removed:
// its address goes back to IPAM and its host side, if any, goes.
func (a *Agent) restoreWorkloads(ctx context.Context) error {
	data, err := os.ReadFile(a.cfg.WorkloadsFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var ws []config.Workload
	if err := json.Unmarshal(data, &ws); err != nil {
		a.log.Error("unreadable workloads file: not serving its workloads", "err", err)
		return nil
	}
	var serve []config.Workload
	for _, w := range ws {
		if slices.ContainsFunc(a.cfg.Workloads, func(c config.Workload) bool { return c.Name == w.Name }) {
			continue
		}
		if !w.IsNetstack() && !netns.Exists(w.Namespace) {
			a.log.Info("workload namespace is gone: releasing the workload", "workload", w.Name, "namespace", w.Namespace)
			a.dp.RemoveWorkload(config.InterfaceName(a.cfg.Lab, w.Name))
			if err := a.ipam.ReleaseByHandle(ctx, handle(a.cfg.Lab, w.Name)); err != nil {
				a.log.Error("release the address of a gone workload", "workload", w.Name, "err", err)
			}
			continue
		}
		serve = append(serve, w)
	}
	// One IPAM transaction for them all; the start syncs the blocks once
	// after.
	addrs, err := a.assignWorkloads(ctx, serve)
	if err != nil {
		return err
	}
	for _, w := range serve {
		if _, err := a.serveWorkload(ctx, w, addrs[w.Name]); err != nil {
			return err
		}
		a.mu.Lock()
		a.added[w.Name] = w
		a.mu.Unlock()
	}
	a.saveWorkloads()
	return nil
}
