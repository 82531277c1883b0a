package config

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
)

// Router is what the forwarder of an external router needs: the
// router namespace's underlay interface, its fabric neighbours and the
// addresses to put on its loopback. `vrouter router run` reads it.
type Router struct {
	Lab       string `json:"lab"`
	Router    string `json:"router"`
	Namespace string `json:"namespace"`
	// Control is the forwarder's control socket and Fabric the fabric's
	// directory, in the lab's state directory.
	Control   string       `json:"control"`
	Fabric    string       `json:"fabric"`
	Network   string       `json:"network"`
	Prefix    netip.Prefix `json:"prefix"` // router address with the network's length
	Interface string       `json:"interface"`
	MTU       int          `json:"mtu"`
	Neighbors []Neighbor   `json:"neighbors"`
	// Loopback are addresses (with their prefix length) put on lo: the
	// networks behind the router.
	Loopback []netip.Prefix `json:"loopback,omitempty"`
	// GoBGP, when set, has the forwarder copy gobgpd's best routes into
	// the namespace's kernel table.
	GoBGP *GoBGPKernel `json:"gobgp,omitempty"`
	// Interfaces are the router's interfaces on more networks (a router
	// node joining several underlays); the one above is its first.
	Interfaces []RouterInterface `json:"interfaces,omitempty"`
	// Routes are static routes the forwarder puts in the namespace's
	// kernel table (proto static) once the interfaces are up.
	// Impairments are applied to the router's interfaces, by name, when
	// the forwarder starts (a lab file's impairments).
	Impairments map[string]Impairment `json:"impairments,omitempty"`
	Routes      []StaticRoute         `json:"routes,omitempty"`
	// ErrorsToIngress sends the ICMP errors the router has no route for
	// back out of the interface the offending packet came in on, to the
	// neighbour it came from (a router node between racks knows no
	// workload addresses, yet a workload should see why its packets go
	// nowhere): dataplane.EngineConfig.ErrorsToIngress.
	ErrorsToIngress bool `json:"errorsToIngress,omitempty"`
}

// RouterInterface is one more underlay interface of a router.
type RouterInterface struct {
	Network   string       `json:"network"`
	Prefix    netip.Prefix `json:"prefix"` // address with the network's length
	Interface string       `json:"interface"`
	MTU       int          `json:"mtu"`
	Neighbors []Neighbor   `json:"neighbors"`
}

// StaticRoute is a static route of a router: Dst via Via.
type StaticRoute struct {
	Dst netip.Prefix `json:"dst"`
	Via netip.Addr   `json:"via"`
}

// LoadRouter reads a router forwarder config file.
func LoadRouter(path string) (*Router, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read router config: %w", err)
	}
	var c Router
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("parse router config %s: %w", path, err)
	}
	if c.Router == "" || !c.Prefix.IsValid() || c.Interface == "" || c.Namespace == "" {
		return nil, fmt.Errorf("router config %s: router, namespace, prefix and interface are required", path)
	}
	if c.Control == "" || c.Fabric == "" {
		return nil, fmt.Errorf("router config %s: control and fabric are required (a config from an older vrouter: destroy the lab and deploy it again)", path)
	}
	return &c, nil
}

// WriteFile writes c as indented JSON.
func (c *Router) WriteFile(path string) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o600)
}

// GoBGPKernel says where a router's gobgpd listens: gobgpd installs no
// kernel routes, and the zebra integration of Debian's gobgpd (3.10) does
// not understand the zebra of Debian's FRR (8.4), so the forwarder copies
// gobgpd's best IPv4 routes into the namespace's kernel table itself.
type GoBGPKernel struct {
	CLI    string `json:"cli"`    // gobgp
	Socket string `json:"socket"` // gobgpd's API socket
}
