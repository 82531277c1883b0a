package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/ipam"
	"github.com/vrouter-lab/vrouter/vrouter/policy"
	"github.com/vrouter-lab/vrouter/vrouter/resources"
)

// The commands on Calico resources in etcd: `vrouter apply -f`, `vrouter
// get KIND --datastore etcd`, `vrouter delete KIND NAME --datastore etcd`
// (calicoctl's apply, get and delete).

// etcdHelp ends the help of a command that reads or writes etcd.
const etcdHelp = `The datastore is etcd: --datastore etcd with --etcd-endpoints (the members'
client URLs) and, for TLS, --etcd-cert, --etcd-key and --etcd-ca. Resources
live under /calico/resources/v3/projectcalico.org/<kind>/<name> as Calico's
JSON (namespaced kinds, NetworkPolicy and WorkloadEndpoint, under
<kind>/<namespace>/<name>: -n NAMESPACE names one, default "default").`

// openResources opens the resource store the datastore flags name.
func openResources(cmd *cobra.Command, ds *datastoreFlags) (*resources.Store, error) {
	cfg := &config.Node{}
	if !cmd.Flags().Changed("datastore") {
		return nil, errors.New("say where the resources are: --datastore etcd --etcd-endpoints URL")
	}
	if err := ds.apply(cmd, cfg); err != nil {
		return nil, err
	}
	if cfg.DatastoreType != config.DatastoreEtcd {
		return nil, fmt.Errorf("resources live in etcd: --datastore etcd, not %s", cfg.DatastoreType)
	}
	return resources.Open(cmd.Context(), etcdStoreFlags(cfg))
}

// applyResources writes every resource of file (validated as a whole
// first) and reports each, to the etcd the datastore flags name or, when
// labStore is not nil, to the one it opens (an etcd lab's).
func applyResources(cmd *cobra.Command, ds *datastoreFlags, file string, labStore func() (*resources.Store, error)) error {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), resources.MaxFileSize+1))
	} else {
		data, err = readLimited(file, resources.MaxFileSize+1)
	}
	if err != nil {
		return err
	}
	rs, err := resources.ParseYAML(file, data)
	if err != nil {
		return err
	}
	var s *resources.Store
	if labStore != nil {
		s, err = labStore()
	} else {
		s, err = openResources(cmd, ds)
	}
	if err != nil {
		return err
	}
	defer s.Close()
	// Pools first, nodes last, as resources.Kinds orders them.
	n := 0
	for _, kind := range resources.Kinds {
		for _, r := range rs {
			if r.Type().Kind != kind {
				continue
			}
			if err := s.Put(cmd.Context(), r); err != nil {
				return fmt.Errorf("after %d of %d resources: %w", n, len(rs), err)
			}
			n++
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s applied\n", kind, resources.ID(r))
		}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Successfully applied %d resource(s)\n", n)
	return nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// etcdStoreFlags is the etcd configuration of cfg.
func etcdStoreFlags(cfg *config.Node) ipam.EtcdConfig {
	return ipam.EtcdConfig{
		Endpoints: cfg.Etcd.Endpoints,
		CertFile:  cfg.Etcd.CertFile, KeyFile: cfg.Etcd.KeyFile, CAFile: cfg.Etcd.CAFile,
		Timeout: cfg.Etcd.Timeout,
	}
}

// resourceTable lists resources as calicoctl get does.
func resourceTable(kind string, rs []resources.Resource) *lab.Table {
	t := &lab.Table{}
	add := func(r resources.Resource, row ...string) {
		t.Rows = append(t.Rows, row)
		t.Items = append(t.Items, toItem(r))
	}
	switch kind {
	case resources.KindNode:
		t.Columns, t.Narrow = []string{"NAME", "ASN", "IPV4", "IPV6"}, 1
		for _, r := range rs {
			n := r.(*resources.Node)
			asn, ip := "", ""
			if b := n.Spec.BGP; b != nil {
				ip = b.IPv4Address
				if b.ASNumber != nil {
					asn = strconv.FormatUint(uint64(*b.ASNumber), 10)
				} else {
					asn = "(64512)"
				}
			}
			add(r, n.Metadata.Name, asn, ip, "")
		}
	case resources.KindIPPool:
		t.Columns, t.Narrow = []string{"NAME", "CIDR", "SELECTOR", "NAT", "IPIPMODE", "VXLANMODE", "DISABLED"}, 3
		for _, r := range rs {
			p := r.(*resources.IPPool)
			sel := p.Spec.NodeSelector
			if sel == "" {
				sel = "all()"
			}
			mode := p.Spec.IPIPMode
			if mode == "" {
				mode = "Never"
			}
			vx := p.Spec.VXLANMode
			if vx == "" {
				vx = "Never"
			}
			add(r, p.Metadata.Name, p.Spec.CIDR, sel, strconv.FormatBool(p.Spec.NATOutgoing), mode, vx, strconv.FormatBool(p.Spec.Disabled))
		}
	case resources.KindBGPPeer:
		t.Columns, t.Narrow = []string{"NAME", "PEERIP", "NODE", "ASN", "KEEPORIGINALNEXTHOP"}, 4
		for _, r := range rs {
			p := r.(*resources.BGPPeer)
			peer := p.Spec.PeerIP
			if peer == "" {
				peer = p.Spec.PeerSelector
			}
			node := p.Spec.Node
			switch {
			case node == "" && p.Spec.NodeSelector != "":
				node = p.Spec.NodeSelector
			case node == "":
				node = "(global)"
			}
			asn := ""
			if p.Spec.ASNumber != 0 {
				asn = strconv.FormatUint(uint64(p.Spec.ASNumber), 10)
			}
			add(r, p.Metadata.Name, peer, node, asn, strconv.FormatBool(p.Spec.KeepOriginalNextHop))
		}
	case resources.KindBGPConfiguration:
		t.Columns, t.Narrow = []string{"NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"}, 4
		for _, r := range rs {
			c := r.(*resources.BGPConfiguration)
			mesh := ""
			if c.Metadata.Name == "default" {
				mesh = "true"
				if c.Spec.NodeToNodeMeshEnabled != nil {
					mesh = strconv.FormatBool(*c.Spec.NodeToNodeMeshEnabled)
				}
			}
			asn := "-"
			if c.Spec.ASNumber != nil {
				asn = strconv.FormatUint(uint64(*c.Spec.ASNumber), 10)
			}
			add(r, c.Metadata.Name, c.Spec.LogSeverityScreen, mesh, asn)
		}
	case resources.KindNetworkPolicy, resources.KindGlobalNetworkPolicy:
		t.Columns, t.Narrow = []string{"NAMESPACE", "NAME", "ORDER", "SELECTOR", "TYPES", "INGRESS", "EGRESS"}, 2
		if kind == resources.KindGlobalNetworkPolicy {
			t.Columns, t.Narrow = t.Columns[1:], 1
		}
		for _, r := range rs {
			var s *resources.PolicySpec
			switch p := r.(type) {
			case *resources.NetworkPolicy:
				s = &p.Spec
			case *resources.GlobalNetworkPolicy:
				s = &p.Spec
			}
			order := ""
			if s.Order != nil {
				order = strconv.FormatFloat(*s.Order, 'g', -1, 64)
			}
			types := ""
			if pol, err := policyOf(r); err == nil {
				for i, d := range pol.Types {
					if i > 0 {
						types += ","
					}
					types += string(d)
				}
			}
			row := []string{r.Meta().Namespace, r.Meta().Name, order, s.Selector, types, strconv.Itoa(len(s.Ingress)), strconv.Itoa(len(s.Egress))}
			if kind == resources.KindGlobalNetworkPolicy {
				row = row[1:]
			}
			add(r, row...)
		}
	case resources.KindWorkloadEndpoint:
		t.Columns, t.Narrow = []string{"NAMESPACE", "WORKLOAD", "NODE", "NETWORKS", "INTERFACE", "NAME", "LABELS"}, 5
		for _, r := range rs {
			w := r.(*resources.WorkloadEndpoint)
			wl := w.Spec.Pod
			if wl == "" {
				wl = w.Spec.Workload
			}
			var labels []string
			for k, v := range w.Metadata.Labels {
				labels = append(labels, k+"="+v)
			}
			slices.Sort(labels)
			add(r, w.Metadata.Namespace, wl, w.Spec.Node, strings.Join(w.Spec.IPNetworks, ","), w.Spec.InterfaceName, w.Metadata.Name, strings.Join(labels, ","))
		}
	}
	return t
}

// policyOf returns a policy resource's policy.
func policyOf(r resources.Resource) (policy.Policy, error) {
	switch p := r.(type) {
	case *resources.NetworkPolicy:
		return p.Policy()
	case *resources.GlobalNetworkPolicy:
		return p.Policy()
	}
	return policy.Policy{}, fmt.Errorf("%s is not a policy", r.Type().Kind)
}

// qualify returns the ID of the resource kind/name in namespace ns
// (default "default") for a namespaced kind, name otherwise.
func qualify(kind, name, ns string) string {
	if !resources.Namespaced(kind) {
		return name
	}
	if ns == "" {
		ns = "default"
	}
	return ns + "/" + name
}

// toItem is a resource as -o json/yaml print it: Calico's shape.
func toItem(r resources.Resource) map[string]any {
	var m map[string]any
	data, err := json.Marshal(r)
	if err == nil {
		err = json.Unmarshal(data, &m)
	}
	if err != nil {
		return map[string]any{"error": err.Error()}
	}
	return m
}

// getResources prints the resources of kind (or the one named name), of
// namespace ns if given (every namespace's when listing without it).
func getResources(cmd *cobra.Command, ds *datastoreFlags, kind, name, ns, output string) error {
	s, err := openResources(cmd, ds)
	if err != nil {
		return err
	}
	defer s.Close()
	var rs []resources.Resource
	if name != "" {
		r, err := s.Get(cmd.Context(), kind, qualify(kind, name, ns))
		if err != nil {
			return err
		}
		rs = []resources.Resource{r}
	} else if rs, err = s.List(cmd.Context(), kind); err != nil {
		return err
	} else if ns != "" {
		rs = slices.DeleteFunc(rs, func(r resources.Resource) bool { return r.Meta().Namespace != ns })
	}
	return printListing(cmd.OutOrStdout(), resourceTable(kind, rs), output)
}

func newDeleteCommand() *cobra.Command {
	var ds datastoreFlags
	var ns string
	cmd := &cobra.Command{
		Use:   "delete KIND NAME [-n NAMESPACE] --datastore etcd --etcd-endpoints URL,...",
		Short: "Delete a Node, IPPool, BGPConfiguration, BGPPeer, (Global)NetworkPolicy or WorkloadEndpoint from etcd, as calicoctl delete does",
		Long: `delete removes one resource from etcd. Deleting a Node takes the node out of
every other node's mesh within seconds (its agent, if still running,
registers it again only when restarted); deleting a BGPPeer closes its
sessions; deleting a policy lifts it on every node within seconds.

` + etcdHelp,
		Example: "  vrouter delete node node4 --datastore etcd --etcd-endpoints http://10.0.0.1:2379\n" +
			"  vrouter delete bgppeer tor --datastore etcd --etcd-endpoints http://10.0.0.1:2379\n" +
			"  vrouter delete networkpolicy allow-web -n prod --datastore etcd --etcd-endpoints http://10.0.0.1:2379",
		Args: cobra.ExactArgs(2),
	}
	ds.register(cmd)
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace of a NetworkPolicy or WorkloadEndpoint (default \"default\")")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		kind, ok := resources.KindOf(args[0])
		if !ok {
			return fmt.Errorf("unknown kind %q: want nodes, ippools, bgppeers, bgpconfigurations, networkpolicies, globalnetworkpolicies or workloadendpoints", args[0])
		}
		s, err := openResources(cmd, &ds)
		if err != nil {
			return err
		}
		defer s.Close()
		if ns != "" && !resources.Namespaced(kind) {
			return fmt.Errorf("a %s has no namespace", kind)
		}
		if err := s.Delete(cmd.Context(), kind, qualify(kind, args[1], ns)); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Successfully deleted 1 '%s' resource(s)\n", kind)
		return nil
	}
	return cmd
}
