package config

import "path/filepath"

// The paths of a node agent's files. A lab sets each in the agent's Node
// (topology/lab/statedir.go computes every path of a lab's state); on a
// host they derive from the node file's stateDir, in the layout below,
// which the CNI plugin and the CLI find the control socket by
// (HostControlSocket):
//
//	<stateDir>/nodes/<node>.sock             control socket
//	<stateDir>/nodes/<node>.routes.json      learned routes (graceful restart)
//	<stateDir>/nodes/<node>.workloads.json   workloads added through the API
//	<stateDir>/fabric/                       the userspace underlay's sockets

// HostControlSocket is the control socket of the agent of node on a host
// whose state directory is stateDir.
func HostControlSocket(stateDir, node string) string {
	return filepath.Join(stateDir, "nodes", node+".sock")
}

// ControlSocket is the agent's control socket.
func (c *Node) ControlSocket() string {
	if c.Control != "" {
		return c.Control
	}
	return HostControlSocket(c.StateDir, c.Node)
}

// FabricDir is the directory of the userspace underlay's sockets.
func (c *Node) FabricDir() string {
	if c.Fabric != "" {
		return c.Fabric
	}
	return filepath.Join(c.StateDir, "fabric")
}

// RoutesFile is where the agent keeps the routes it learned, for a
// graceful restart.
func (c *Node) RoutesFile() string {
	if c.Routes != "" {
		return c.Routes
	}
	return filepath.Join(c.StateDir, "nodes", c.Node+".routes.json")
}

// WorkloadsFile is where the agent keeps the workloads added through its
// control API.
func (c *Node) WorkloadsFile() string {
	if c.AddedWorkloads != "" {
		return c.AddedWorkloads
	}
	return filepath.Join(c.StateDir, "nodes", c.Node+".workloads.json")
}
