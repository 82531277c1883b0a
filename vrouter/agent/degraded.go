package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/ipam"
	"github.com/vrouter-lab/vrouter/vrouter/resources"
)

// Starting with etcd down. An agent on etcd keeps what it last knew of
// the datastore in a cache file beside its routes file (its pools, tunl0
// address, announced blocks and its workloads' addresses), rewritten
// whenever its blocks are synced. An agent that starts while no etcd
// member answers does not fail: it serves its workloads at their saved
// addresses, brings tunl0 up with its saved address, announces its saved
// blocks, peers as configured (BGP needs no datastore) and keeps
// forwarding, while it retries etcd in the background. Meanwhile adding
// a workload fails after the store's timeout with an error naming etcd.
// Once etcd answers, the agent checks its workloads' addresses against
// IPAM (claiming any that IPAM lost) and syncs its blocks from IPAM.

// datastoreCache is the cache file's content.
type datastoreCache struct {
	Pools      []config.Pool         `json:"pools,omitempty"`
	TunnelAddr netip.Addr            `json:"tunnelAddr,omitzero"`
	Blocks     []netip.Prefix        `json:"blocks,omitempty"` // announced
	Holes      []netip.Prefix        `json:"holes,omitempty"`  // of Blocks, the blackholed ones
	Workloads  map[string]netip.Addr `json:"workloads,omitempty"`
	Peers      []config.BGPPeer      `json:"peers,omitempty"` // with the mesh from etcd
}

// cacheFile is where the agent keeps its datastoreCache.
func (a *Agent) cacheFile() string {
	return filepath.Join(filepath.Dir(a.cfg.RoutesFile()), a.cfg.Node+".datastore-cache.json")
}

// openStore opens the node's IPAM datastore. An etcd cluster that does
// not answer leaves the agent degraded, starting from its cache file.
func (a *Agent) openStore(ctx context.Context) error {
	cfg := a.cfg
	if cfg.DatastoreType != config.DatastoreEtcd {
		s, err := OpenDatastore(ctx, cfg)
		if err != nil {
			return err
		}
		a.store = s
		return nil
	}
	if err := cfg.CheckDatastore(); err != nil {
		return err
	}
	es, err := ipam.NewEtcd(etcdStoreConfig(cfg))
	if err != nil {
		return err
	}
	a.store = es
	if cfg.MeshFromDatastore {
		a.res = resources.FromIPAM(es)
	}
	perr := es.Ping(ctx)
	if perr == nil {
		return nil
	}
	if ctx.Err() != nil {
		return perr
	}
	data, err := os.ReadFile(a.cacheFile())
	if err != nil {
		// Nothing saved: a node that never ran cannot start blind.
		return fmt.Errorf("%w (and no saved state to start from: %v)", perr, err)
	}
	if err := json.Unmarshal(data, &a.cache); err != nil {
		return fmt.Errorf("%w (and the saved state %s is unreadable: %v)", perr, a.cacheFile(), err)
	}
	a.degraded.Store(true)
	a.log.Warn("etcd unreachable: starting from the saved state, retrying etcd in the background", "err", perr,
		"blocks", len(a.cache.Blocks), "workloads", len(a.cache.Workloads))
	return nil
}

// etcdStoreConfig is the IPAM store's configuration of cfg's etcd.
func etcdStoreConfig(cfg *config.Node) ipam.EtcdConfig {
	return ipam.EtcdConfig{
		Endpoints: cfg.Etcd.Endpoints,
		CertFile:  cfg.Etcd.CertFile, KeyFile: cfg.Etcd.KeyFile, CAFile: cfg.Etcd.CAFile,
		Timeout: cfg.Etcd.Timeout,
	}
}

// saveCache writes the cache file (etcd only). The caller holds a.mu.
func (a *Agent) saveCacheLocked() {
	if a.cfg.DatastoreType != config.DatastoreEtcd || a.degraded.Load() || !a.synced.Load() {
		return
	}
	c := datastoreCache{Pools: a.currentPools(), TunnelAddr: a.tunnelAddr, Blocks: a.blocks, Workloads: map[string]netip.Addr{}}
	for p := range a.holes {
		c.Holes = append(c.Holes, p)
	}
	for name, w := range a.workloads {
		c.Workloads[name] = w.Address
	}
	if a.cfg.MeshFromDatastore {
		c.Peers = a.peerList()
	}
	data, err := json.Marshal(c)
	if err == nil {
		path := a.cacheFile()
		tmp := path + ".tmp"
		if err = os.WriteFile(tmp, data, 0o600); err == nil {
			err = os.Rename(tmp, path)
		}
	}
	if err != nil {
		a.log.Error("save the datastore cache", "err", err)
	}
}

// savedAddress returns the address a degraded agent that is starting
// serves w at: the
// cache's, or the one w was saved with (a workload added through the
// API), if any.
func (a *Agent) savedAddress(w config.Workload) (netip.Addr, bool) {
	if !a.degraded.Load() || a.serving.Load() {
		return netip.Addr{}, false
	}
	if addr, ok := a.cache.Workloads[w.Name]; ok && addr.IsValid() {
		return addr, true
	}
	return w.Address, w.Address.IsValid()
}

// recoverDatastore retries etcd until it answers, then reconciles the
// node with IPAM and leaves the degraded state.
func (a *Agent) recoverDatastore(ctx context.Context) {
	es, ok := a.store.(*ipam.EtcdStore)
	if !ok {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		if err := es.Ping(ctx); err != nil {
			continue
		}
		if err := a.reconcile(ctx); err != nil {
			a.log.Error("etcd is back, but reconciling with IPAM failed (retrying)", "err", err)
			continue
		}
		a.log.Info("etcd reachable again: the node is in sync with IPAM")
		return
	}
}

// reconcile checks every workload's address against IPAM (claiming it
// again if IPAM has no record of it), then syncs the blocks.
func (a *Agent) reconcile(ctx context.Context) error {
	a.mu.Lock()
	ws := make(map[string]netip.Addr, len(a.workloads))
	for name, w := range a.workloads {
		ws[name] = w.Address
	}
	tunnel := a.tunnelAddr
	a.mu.Unlock()
	check := func(h string, addr netip.Addr, attrs map[string]string) error {
		got, err := a.ipam.AddressByHandle(ctx, h)
		switch {
		case err == nil && got == addr:
			return nil
		case err == nil:
			a.log.Error("IPAM holds another address for a workload served during the etcd outage", "handle", h, "served", addr, "ipam", got)
			return nil
		case errors.Is(err, ipam.ErrNotFound):
			a.log.Warn("claiming again an address served during the etcd outage", "handle", h, "address", addr)
			return a.ipam.AssignIP(ctx, addr, ipam.AssignArgs{Node: a.cfg.Node, Handle: h, Attrs: attrs})
		}
		return err
	}
	for name, addr := range ws {
		if err := check(handle(a.cfg.Lab, name), addr, map[string]string{"workload": name, "node": a.cfg.Node}); err != nil {
			return err
		}
	}
	if tunnel.IsValid() {
		if err := check("ipip-tunnel-addr-"+a.cfg.Node, tunnel, map[string]string{"type": "ipipTunnelAddress", "node": a.cfg.Node}); err != nil {
			return err
		}
	}
	a.degraded.Store(false)
	return a.syncBlocks(ctx)
}
