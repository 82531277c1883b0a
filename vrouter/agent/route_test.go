package agent

import (
	"net/netip"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
)

// Routes learned over BGP from a node on another network: through tunl0
// with the node as outer destination when the pool encapsulates, else
// resolved recursively to the default gateway, as BIRD's "gateway
// recursive" does; the BGP next hop is kept for reprogramming.
func TestBGPRouteAcrossNetworks(t *testing.T) {
	mp, ma := netip.MustParsePrefix, netip.MustParseAddr
	pool := mp("10.244.0.0/16")
	for _, tc := range []struct {
		mode, nextHop, want string
	}{
		{"Never", "192.168.50.11", "10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird"},
		{"Never", "192.168.60.10", "10.244.104.0/26 via 192.168.50.1 dev ens33 proto bird"},
		{"CrossSubnet", "192.168.50.11", "10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird"},
		{"CrossSubnet", "192.168.60.10", "10.244.104.0/26 via 192.168.60.10 dev tunl0 proto bird onlink"},
		{"Always", "192.168.60.10", "10.244.104.0/26 via 192.168.60.10 dev tunl0 proto bird onlink"},
	} {
		a := testAgent(t, t.TempDir())
		a.cfg.Prefix = mp("192.168.50.10/24")
		pools := []config.Pool{{Name: "p", CIDR: pool, BlockSize: 26, IPIPMode: tc.mode}}
		a.pools.Store(&pools)
		for _, r := range []fib.Route{
			{Dst: mp("192.168.50.0/24"), Type: fib.Unicast, Dev: "ens33", Protocol: fib.ProtoKernel, Scope: fib.ScopeLink},
			{Dst: mp("0.0.0.0/0"), Type: fib.Unicast, Gateway: ma("192.168.50.1"), Dev: "ens33", Protocol: fib.ProtoStatic},
		} {
			if err := a.dp.ReplaceRoute(r); err != nil {
				t.Fatal(err)
			}
		}
		r := a.bgpRoute(mp("10.244.104.0/26"), ma(tc.nextHop))
		if got := r.String(); got != tc.want {
			t.Errorf("%s, next hop %s: route %q, want %q", tc.mode, tc.nextHop, got, tc.want)
		}
	}
}
