package fabric

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/vrouter-lab/vrouter/vrouter/netns"
)

// maxDgramQlenPath is the sysctl net.unix.max_dgram_qlen. Opened by a
// thread inside a network namespace it is that namespace's value.
const maxDgramQlenPath = "/proc/sys/net/unix/max_dgram_qlen"

// DefaultMaxDgramQlen is the receive queue length a lab should give its
// node namespaces with SetMaxDgramQlen: a Linux interface's default
// txqueuelen. The kernel's own default, 10, drops bursts: a TUN read of a
// few GSO super-packets already fills it.
const DefaultMaxDgramQlen = 1000

// SetMaxDgramQlen sets net.unix.max_dgram_qlen to n inside the named
// network namespace (never the root one: netns.Do refuses it). Unix
// datagram sockets created in that namespace afterwards, by a process
// running in it or through Options.Namespace or TapOptions.Namespace,
// queue up to n+1 datagrams before senders see their queue full; sockets
// that exist already keep the length they were created with. Needs root.
func SetMaxDgramQlen(namespace string, n int) error {
	if n < 0 {
		return errors.New("fabric: negative max_dgram_qlen")
	}
	err := netns.Do(namespace, func() error {
		return os.WriteFile(maxDgramQlenPath, []byte(strconv.Itoa(n)+"\n"), 0)
	})
	if err != nil {
		return fmt.Errorf("fabric: set net.unix.max_dgram_qlen in %s: %w", namespace, err)
	}
	return nil
}

// MaxDgramQlen reads net.unix.max_dgram_qlen inside the named network
// namespace.
func MaxDgramQlen(namespace string) (int, error) {
	var n int
	err := netns.Do(namespace, func() error {
		b, err := os.ReadFile(maxDgramQlenPath)
		if err != nil {
			return err
		}
		n, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("fabric: read net.unix.max_dgram_qlen in %s: %w", namespace, err)
	}
	return n, nil
}
