package lab

import (
	"context"
	"fmt"
	"strconv"

	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/ipam"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
)

// Table is a calicoctl-style listing: a table (the first Narrow columns by
// default, all of them wide) and the items behind it for -o json|yaml.
type Table struct {
	Columns []string
	Narrow  int
	Rows    [][]string
	Items   []map[string]any
}

func (l *Table) add(item map[string]any, row ...string) {
	l.Rows = append(l.Rows, row)
	l.Items = append(l.Items, item)
}

// Listing lists one kind of resource of a deployed lab: nodes, workloads,
// ippools or blocks.
func Listing(ctx context.Context, st *State, kind string) (*Table, error) {
	switch kind {
	case "policies", "policy", "networkpolicies", "globalnetworkpolicies":
		return policyListing(ctx, st)
	case "denied", "denials":
		return denialListing(ctx, st)
	case "nodes", "node", "no":
		l := &Table{Columns: []string{"NAME", "ASN", "IPV4", "NETWORK", "INTERFACE"}, Narrow: 1}
		for _, n := range st.Nodes {
			// As calicoctl: the AS in parentheses when it is the default.
			spec, _ := st.Spec.Node(n.Name)
			num := spec.ASNumber
			if num == 0 {
				num = st.Spec.BGP.ASNumber
			}
			asn := strconv.FormatUint(uint64(num), 10)
			if num == st.Spec.BGP.ASNumber {
				asn = "(" + asn + ")"
			}
			l.add(map[string]any{"name": n.Name, "asNumber": num, "ipv4Address": n.Address.String(), "network": n.Network, "interface": n.Interface},
				n.Name, asn, n.Address.String(), n.Network, n.Interface)
		}
		return l, nil
	case "workloads", "workload", "wep", "workloadendpoints":
		l := &Table{Columns: []string{"WORKLOAD", "NODE", "NETWORKS", "INTERFACE", "STACK", "NAMESPACE", "STATE"}, Narrow: 5}
		addrs := map[string]string{}
		for _, n := range st.Nodes {
			if s, err := control.NewClient(n.Control).Status(ctx); err == nil {
				for _, w := range s.Workloads {
					addrs[w.Name] = w.Address.String() + "/32"
				}
			}
		}
		for _, w := range st.Workloads {
			a := addrs[w.Name]
			if a == "" {
				a = "-"
			}
			state := "running"
			switch {
			case !w.IsNetstack() && !netns.Exists(w.Namespace):
				state = "missing" // deleted outside vrouter
			case a == "-":
				state = "down"
			}
			ns := w.Namespace
			if w.IsNetstack() {
				ns = "-" // its stack is in the node's agent
			}
			l.add(map[string]any{"name": w.Name, "node": w.Node, "ipNetworks": a, "interfaceName": w.Interface, "namespace": w.Namespace, "stack": w.StackName(), "state": state},
				w.Name, w.Node, a, w.Interface, w.StackName(), ns, state)
		}
		return l, nil
	case "ippools", "ippool", "pools":
		l := &Table{Columns: []string{"NAME", "CIDR", "SELECTOR", "BLOCKSIZE", "IPIPMODE"}, Narrow: 3}
		for _, p := range st.Spec.IPPools {
			l.add(map[string]any{"name": p.Name, "cidr": p.CIDR.String(), "blockSize": p.BlockSize, "ipipMode": string(p.IPIPMode), "nodeSelector": "all()"},
				p.Name, p.CIDR.String(), "all()", strconv.Itoa(p.BlockSize), string(p.IPIPMode))
		}
		return l, nil
	case "blocks", "block":
		store, err := st.OpenIPAM(ctx)
		if err != nil {
			return nil, err
		}
		defer store.Close()
		var pools []ipam.Pool
		for _, p := range st.Spec.IPPools {
			pools = append(pools, ipam.Pool{Name: p.Name, CIDR: p.CIDR, BlockSize: p.BlockSize})
		}
		m, err := ipam.New(store, pools)
		if err != nil {
			return nil, err
		}
		blocks, err := m.Blocks(ctx)
		if err != nil {
			return nil, err
		}
		l := &Table{Columns: []string{"CIDR", "AFFINITY", "IPS TOTAL", "IPS IN USE", "IPS FREE"}, Narrow: 5}
		for _, b := range blocks {
			aff := "-"
			if b.Affinity != "" {
				aff = "host:" + b.Affinity
			}
			total, free := b.NumAddresses(), b.NumFree()
			l.add(map[string]any{"cidr": b.CIDR.String(), "affinity": aff, "total": total, "inUse": total - free, "free": free},
				b.CIDR.String(), aff, strconv.Itoa(total), strconv.Itoa(total-free), strconv.Itoa(free))
		}
		return l, nil
	case "bgppeers", "bgppeer", "bgpp":
		// calicoctl's columns: the peer IP or peer selector, the node or
		// node selector ("(global)" for every node), the AS.
		l := &Table{Columns: []string{"NAME", "PEERIP", "NODE", "ASN", "PASSWORD"}, Narrow: 4}
		for _, p := range st.Spec.BGPPeers {
			peer := p.PeerSelector
			if p.PeerIP.IsValid() {
				peer = p.PeerIP.String()
			}
			node := "(global)"
			switch {
			case p.Node != "":
				node = p.Node
			case p.NodeSelector != "":
				node = p.NodeSelector
			}
			asn := "(node's own)"
			if p.ASNumber != 0 {
				asn = strconv.FormatUint(uint64(p.ASNumber), 10)
			}
			pw := "-"
			if p.Password != "" {
				pw = "set"
			}
			item := map[string]any{"name": p.Name, "node": p.Node, "nodeSelector": p.NodeSelector, "peerSelector": p.PeerSelector, "asNumber": p.ASNumber, "password": p.Password != ""}
			if p.PeerIP.IsValid() {
				item["peerIP"] = p.PeerIP.String()
			}
			l.add(item, p.Name, peer, node, asn, pw)
		}
		return l, nil
	case "etcdmembers", "etcdmember", "etcd":
		l := &Table{Columns: []string{"NAME", "NAMESPACE", "ENDPOINT", "STATE", "DATADIR"}, Narrow: 4}
		if st.Etcd == nil {
			return nil, fmt.Errorf("lab %s runs no etcd (its datastore is bbolt)", st.Name)
		}
		for _, m := range st.EtcdStatus(ctx) {
			l.add(map[string]any{"name": m.Name, "namespace": m.Namespace, "endpoint": m.Endpoint, "state": m.State, "dataDir": m.DataDir},
				m.Name, m.Namespace, m.Endpoint, m.State, m.DataDir)
		}
		return l, nil
	}
	return nil, fmt.Errorf("unknown resource %q (want nodes, workloads, ippools, blocks, bgppeers, etcdmembers, policies or denied)", kind)
}

// IPAMStore is a lab's IPAM datastore, opened by vrouter's commands.
type IPAMStore interface {
	ipam.Datastore
	Close() error
}

// OpenIPAM opens the lab's IPAM datastore: the bbolt file in its state
// directory, or its etcd cluster (through the lab's etcd network); the
// caller closes it.
func (s *State) OpenIPAM(ctx context.Context) (IPAMStore, error) {
	if s.Etcd != nil {
		return s.OpenEtcd(ctx)
	}
	return ipam.OpenBolt(ipamPath(s.Dir))
}
