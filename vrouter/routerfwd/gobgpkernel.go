package routerfwd

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"golang.org/x/sys/unix"
)

// gobgpKernelProto marks the kernel routes copied from gobgpd (RTPROT_BGP).
const gobgpKernelProto = unix.RTPROT_BGP

// runGoBGPKernel copies gobgpd's best routes into the kernel table of
// namespace ns every kernelSyncInterval until ctx ends.
func runGoBGPKernel(ctx context.Context, ns string, g *config.GoBGPKernel, log *slog.Logger) {
	t := time.NewTicker(kernelSyncInterval / 2)
	defer t.Stop()
	last := ""
	for {
		err := syncGoBGPKernel(ctx, ns, g)
		if msg := fmt.Sprint(err); err != nil && msg != last {
			log.Warn("copy gobgpd routes to the kernel", "err", err)
			last = msg
		} else if err == nil {
			last = ""
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// gobgpRIB reads gobgpd's global IPv4 RIB: prefix to the next hop of its
// best path, leaving out local routes (next hop 0.0.0.0).
func gobgpRIB(ctx context.Context, g *config.GoBGPKernel) (map[netip.Prefix]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, g.CLI, "--target", "unix://"+g.Socket, "-j", "global", "rib", "-a", "ipv4").Output()
	if err != nil {
		return nil, fmt.Errorf("gobgp global rib: %w", err)
	}
	var rib map[string][]struct {
		Best  bool `json:"best"`
		Attrs []struct {
			Type    int    `json:"type"`
			Nexthop string `json:"nexthop"`
		} `json:"attrs"`
	}
	if err := json.Unmarshal(out, &rib); err != nil {
		return nil, fmt.Errorf("gobgp global rib: %w", err)
	}
	want := map[netip.Prefix]netip.Addr{}
	for p, paths := range rib {
		dst, err := netip.ParsePrefix(p)
		if err != nil || !dst.Addr().Is4() {
			continue
		}
		for _, path := range paths {
			if !path.Best {
				continue
			}
			for _, a := range path.Attrs {
				if nh, err := netip.ParseAddr(a.Nexthop); a.Type == 3 && err == nil && nh.Is4() && !nh.IsUnspecified() {
					want[dst.Masked()] = nh
				}
			}
		}
	}
	return want, nil
}

// syncGoBGPKernel makes the namespace's RTPROT_BGP routes gobgpd's best
// routes.
func syncGoBGPKernel(ctx context.Context, ns string, g *config.GoBGPKernel) error {
	want, err := gobgpRIB(ctx, g)
	if err != nil {
		return err
	}
	h, err := netns.Handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	have, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: gobgpKernelProto}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, kr := range have {
		if kr.Dst == nil {
			continue
		}
		a, _ := netip.AddrFromSlice(kr.Dst.IP.To4())
		bits, _ := kr.Dst.Mask.Size()
		dst := netip.PrefixFrom(a, bits).Masked()
		gw, _ := netip.AddrFromSlice(kr.Gw.To4())
		if nh, ok := want[dst]; ok && nh == gw {
			delete(want, dst)
			continue
		}
		if _, ok := want[dst]; !ok {
			kr := kr
			if err := h.RouteDel(&kr); err != nil {
				return fmt.Errorf("delete route %s: %w", dst, err)
			}
		}
	}
	for dst, nh := range want {
		gw := net.IP(nh.AsSlice())
		via, err := h.RouteGet(gw)
		if err != nil || len(via) == 0 {
			continue // not (yet) reachable: retried next round
		}
		r := &netlink.Route{
			Dst:       &net.IPNet{IP: net.IP(dst.Addr().AsSlice()), Mask: net.CIDRMask(dst.Bits(), 32)},
			Gw:        gw,
			LinkIndex: via[0].LinkIndex,
			Protocol:  gobgpKernelProto,
			Table:     unix.RT_TABLE_MAIN,
		}
		if err := h.RouteReplace(r); err != nil {
			return fmt.Errorf("install route %s via %s: %w", dst, nh, err)
		}
	}
	return nil
}
