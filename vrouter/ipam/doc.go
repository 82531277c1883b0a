// Package ipam is vrouter's IP address management, modelled on Calico IPAM
// (libcalico-go/lib/ipam).
//
// An IP pool (Pool) is carved into blocks, /26 by default. A node claims a
// free block on its first workload and becomes the block's affinity; it
// assigns workload addresses from its own blocks, lowest first, and claims
// another block when they are full. Every block affine to a node is a
// `blackhole CIDR proto bird` route on that node and the prefix it
// announces over BGP; every local workload is a /32 route to its cali
// device. Addresses belong to handles, the workloads' identities, and are
// released by handle (or by address) when a workload is deleted; nothing in
// a block is reserved, so the first address of a block is a workload's too.
//
// All state lives in a Datastore shared by the nodes, and every operation
// is one transaction, so that any number of node processes claiming blocks
// and addresses at once never hand out one twice. BoltStore, the default,
// is a bbolt file in the lab's state directory and needs no server;
// EtcdStore keeps the state in etcd, in Calico's key layout, for nodes on
// many hosts; MemStore serves tests and single processes.
//
// A node agent uses it like this:
//
//	store, err := ipam.OpenBolt(filepath.Join(stateDir, "ipam.db"))
//	...
//	m, err := ipam.New(store, []ipam.Pool{{Name: "default-ipv4-ippool", CIDR: cidr, BlockSize: 26}})
//	...
//	addr, err := m.AutoAssign(ctx, ipam.AssignArgs{Node: "node1", Handle: "lab.web-1"})
//	blocks, err := m.BlocksForNode(ctx, "node1") // blackhole and announce these
//	...
//	err = m.ReleaseByHandle(ctx, "lab.web-1")
//
// AssignMany assigns many addresses (automatic or fixed, for one or more
// nodes) with the same rules in one transaction, as an agent does for the
// workloads of its config at start: with 1,000 workloads per node and 10
// nodes sharing a bbolt file, one transaction per address took minutes.
//
// When no pool has a free block, an address is borrowed from another node's
// block (announced as a /32) unless the pool has strict affinity, as Calico
// does; tunl0's address comes from the node's block under the handle
// "ipip-tunnel-addr-<node>". With etcd, open the store with
//
//	store, err := ipam.OpenEtcd(ctx, ipam.EtcdConfig{Endpoints: []string{"https://10.0.0.1:2379"},
//		CertFile: "client.pem", KeyFile: "client-key.pem", CAFile: "ca.pem"})
package ipam
