package config

import (
	"crypto/sha1"
	"encoding/hex"
)

// InterfaceName returns the engine port name of a workload: "cali" and 11
// hex digits of a hash of the workload's identity, as Calico names the host
// side of a workload's veth (caliXXXXXXXXXXX, 15 bytes, the most an
// interface name may have).
func InterfaceName(lab, workload string) string {
	sum := sha1.Sum([]byte(lab + "." + workload))
	return "cali" + hex.EncodeToString(sum[:])[:11]
}
