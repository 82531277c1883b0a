package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
)

// Nodes added at run time (`vrouter apply -t` with new nodes at the end of
// the lab file's nodes): only in an etcd lab, whose agents mesh with the
// nodes registered in etcd, so the running nodes need no new config: the
// new node's agent registers and every mesh grows by it.

// addedNodes returns the calico nodes lab file l adds to the running lab
// st: those after st's, when l's first nodes are exactly st's.
func addedNodes(st *State, l *topology.Lab) []topology.Node {
	old := st.Spec.Nodes
	if len(l.Nodes) <= len(old) || !sameJSON(l.Nodes[:len(old)], old) {
		return nil
	}
	return l.Nodes[len(old):]
}

// addNodeTimeout bounds the wait for an added node to be ready.
const addNodeTimeout = 60 * time.Second

// addNode adds node n, at position index of lab file l's nodes, to the
// running etcd lab st: its namespace, its ports on its network (a kernel
// lab's bridge; a userspace lab's fabric needs none) and on the etcd
// network, its agent; it records the node in st and waits until the node
// is ready. A node that fails is removed again.
func addNode(ctx context.Context, st *State, l *topology.Lab, n topology.Node, index int) (err error) {
	if st.Etcd == nil {
		return fmt.Errorf("node %s: only a lab with datastore: etcd adds nodes while it runs", n.Name)
	}
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find vrouter executable: %w", err)
	}
	if l.MixedNetwork(n.Network) || (l.KernelNetwork(n.Network) && !netns.Exists(BridgeNamespace(st.Name, n.Network))) {
		return fmt.Errorf("node %s: adding a node whose network %s then mixes kernel and userspace nodes, or gets its first kernel node, is not built yet", n.Name, n.Network)
	}
	c, err := planCalicoNode(l, st.Dir, n)
	if err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	if err := c.prepare(); err != nil {
		return err
	}
	if err := createNamespace(c.Namespace()); err != nil {
		return err
	}
	saved := *st
	savedSpec, savedEtcd := *st.Spec, *st.Etcd
	defer func() {
		if err == nil {
			return
		}
		_ = stopAgent(c.ns.PIDFile)
		_ = netns.Delete(c.Namespace())
		for _, f := range []string{c.ns.Config, c.ns.Log, c.ns.PIDFile, startFile(c.ns.PIDFile)} {
			_ = os.Remove(f)
		}
		*st = saved
		*st.Spec, *st.Etcd = savedSpec, savedEtcd
		err = errors.Join(err, st.save())
	}()
	if err := fabric.SetMaxDgramQlen(c.Namespace(), fabric.DefaultMaxDgramQlen); err != nil {
		return err
	}
	c.record(st)
	spec := *st.Spec
	spec.Nodes = append(append([]topology.Node{}, st.Spec.Nodes...), n)
	st.Spec = &spec
	e := *st.Etcd
	e.Nodes = append(append([]EtcdNode{}, st.Etcd.Nodes...), EtcdNode{Node: n.Name, Address: addrAt(e.Subnet, etcdNodeOffset+index)})
	st.Etcd = &e
	if err := st.save(); err != nil {
		return err
	}
	// A bridge's ports are p<i>, i the node's position among the bridge's
	// ports at deploy; an added node's position in the lab is past them.
	if l.KernelNode(n) {
		for _, b := range planBridges(l, st.Dir) {
			for _, p := range b.ports {
				if b.network == n.Network && p.namespace == c.Namespace() {
					if err := attachPort(b.namespace, b.mtu, fmt.Sprintf("p%d", index), p); err != nil {
						return fmt.Errorf("node %s: network %s: %w", n.Name, n.Network, err)
					}
				}
			}
		}
	}
	ep := bridgePort{namespace: c.Namespace(), iface: topology.EtcdInterface, address: netip.PrefixFrom(e.Nodes[len(e.Nodes)-1].Address, e.Subnet.Bits())}
	if err := attachPort(e.Namespace, topology.DefaultMTU, fmt.Sprintf("p%d", etcdMembers+index), ep); err != nil {
		return fmt.Errorf("node %s: etcd network: %w", n.Name, err)
	}
	if err := c.start(ctx, startEnv{bin: bin, progress: func(string, ...any) {}}); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, addNodeTimeout)
	defer cancel()
	return waitReady(wctx, []Node{c}, false, addNodeTimeout, func(string, ...any) {})
}

// attachPort joins port p to the bridge in namespace ns.
func attachPort(ns string, mtu int, name string, p bridgePort) error {
	h, err := netns.Handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(BridgeName)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	br, ok := link.(*netlink.Bridge)
	if !ok {
		return fmt.Errorf("namespace %s: %s is a %s, not a bridge", ns, BridgeName, link.Type())
	}
	return bridge{namespace: ns, mtu: mtu}.addPort(h, br, name, p)
}
