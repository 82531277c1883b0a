package scenarios

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/probe"
)

// netstackFrom reports whether the workload from is a netstack workload,
// which has no namespace: the ping and tcp steps probe from its stack
// through its agent (lab.Probe) instead of running in a namespace.
func (run *scenarioRun) netstackFrom(from string) bool {
	st, err := run.state()
	if err != nil {
		return false
	}
	w, ok := st.Workload(from)
	return ok && w.IsNetstack()
}

// netstackPing pings to from netstack workload a.from; the result is as
// the ping step's: the outcome against a.success, the output against
// a.output.
func (a pingAssert) netstackPing(ctx context.Context, run *scenarioRun, to netip.Addr) error {
	if a.ttl > 0 {
		return fatal(fmt.Errorf("ping %s: a netstack workload's probe sets no ttl", a.from))
	}
	res, err := lab.Probe(ctx, run.st, a.from, to.String(), probe.Request{Kind: probe.KindPing, Count: a.count, Size: a.size,
		Interval: 200 * time.Millisecond, Timeout: time.Second})
	if err != nil {
		return fatal(fmt.Errorf("ping: %w", err))
	}
	text := strings.TrimSpace(res.Text())
	if res.OK != a.success {
		want := "succeed"
		if !a.success {
			want = "fail"
		}
		return fmt.Errorf("ping %s -> %s (%s): expected it to %s; observed:\n%s", a.from, a.to, to, want, text)
	}
	if a.output != nil && !a.output.MatchString(text) {
		return fmt.Errorf("ping %s -> %s (%s): output does not match /%s/; observed:\n%s", a.from, a.to, to, a.output, text)
	}
	return nil
}

// netstackDial connects from netstack workload from to addr: nil,
// or an error saying refused or not.
func netstackDial(ctx context.Context, run *scenarioRun, from string, addr netip.AddrPort) (refused bool, err error) {
	res, err := lab.Probe(ctx, run.st, from, addr.Addr().String(), probe.Request{Kind: probe.KindTCP, Port: addr.Port(), Timeout: 2 * time.Second})
	if err != nil {
		return false, fatal(err)
	}
	if res.OK {
		return false, nil
	}
	return strings.Contains(res.Error, "refused"), errors.New(res.Error)
}

// isFatal reports whether err ends the scenario (fatal made it).
func isFatal(err error) bool {
	var f *fatalError
	return errors.As(err, &f)
}
