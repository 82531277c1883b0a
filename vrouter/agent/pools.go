package agent

import (
	"net/netip"

	"github.com/vrouter-lab/vrouter/vrouter/config"
)

// workloadMTU returns the MTU of a workload with address a: its pool's,
// or def.
func workloadMTU(pools []config.Pool, a netip.Addr, def int) int {
	for _, p := range pools {
		if p.CIDR.Contains(a) && p.MTU != 0 {
			return p.MTU
		}
	}
	return def
}

// ipip reports whether any pool encapsulates (ipipMode Always or
// CrossSubnet): the node then has tunl0.
func ipip(pools []config.Pool) bool {
	for _, p := range pools {
		if p.IPIPMode == "Always" || p.IPIPMode == "CrossSubnet" {
			return true
		}
	}
	return false
}

// encapsulate reports whether traffic to dst via nextHop goes through
// tunl0: dst is in a pool with ipipMode Always, or CrossSubnet and nextHop
// is not on own, the node's network.
func encapsulate(pools []config.Pool, own netip.Prefix, dst netip.Prefix, nextHop netip.Addr) bool {
	for _, p := range pools {
		if !p.CIDR.Overlaps(dst) || p.CIDR.Bits() > dst.Bits() {
			continue
		}
		switch p.IPIPMode {
		case "Always":
			return true
		case "CrossSubnet":
			return !own.Masked().Contains(nextHop)
		}
		return false
	}
	return false
}

// isNode reports whether addr is a lab node's underlay address.
func isNode(c *config.Node, addr netip.Addr) bool {
	for _, n := range c.Neighbors {
		if n.Address == addr {
			return n.Node != ""
		}
	}
	return false
}
