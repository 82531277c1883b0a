package scenarios

import (
	"context"
	"fmt"

	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"gopkg.in/yaml.v3"
)

// impairStep impairs a node's underlay link or a router's interface, as
// `vrouter link set NODE [IFACE] --delay ... | --clear` does: the
// impairment replaces the link's as a whole; the zero one clears it.
type impairStep struct {
	node, iface string
	imp         config.Impairment
}

// impair parses an impair step: {node, interface, delay, jitter, loss,
// rate, duplicate, corrupt} or {node, interface, clear: true}.
func (p *parser) impair(n *yaml.Node, field string) action {
	node, iface, f := p.nodeAndIface(n, field, "delay", "jitter", "loss", "rate", "duplicate", "corrupt", "clear")
	if f == nil {
		return nil
	}
	s := impairStep{node: node, iface: iface}
	clear := false
	if c := f["clear"]; c != nil {
		clear, _ = p.boolean(c, join(field, "clear"))
		if !clear {
			p.errorf(c, join(field, "clear"), "leave it out, or say true to remove the link's impairment")
		}
	}
	given := false
	for _, k := range config.ImpairmentSettings {
		v := f[k]
		if v == nil {
			continue
		}
		given = true
		str, ok := p.str(v, join(field, k))
		if !ok {
			continue
		}
		err := s.imp.Set(k, str)
		if err != nil {
			p.errorf(v, join(field, k), "%v", err)
		}
	}
	switch {
	case !clear && !given:
		p.errorf(n, field, "say what to do to the link: delay, jitter, loss, rate, duplicate, corrupt, or clear: true")
	case clear && given:
		p.errorf(f["clear"], join(field, "clear"), "clear removes every impairment: give it alone")
	case !clear && given && s.imp.IsZero():
		p.errorf(n, field, "every impairment is zero: say clear: true to remove them")
	case s.imp.Jitter > s.imp.Delay:
		p.errorf(f["jitter"], join(field, "jitter"), "%v is more than the delay (%v): a frame cannot leave early", s.imp.Jitter, s.imp.Delay)
	}
	return s
}

func (s impairStep) describe() string {
	where := s.node
	if s.iface != "" {
		where += " " + s.iface
	}
	if s.imp.IsZero() {
		return fmt.Sprintf("impair %s: clear", where)
	}
	return fmt.Sprintf("impair %s: %s", where, s.imp)
}

func (s impairStep) run(ctx context.Context, run *scenarioRun) error {
	st, err := run.state()
	if err != nil {
		return err
	}
	_, err = lab.SetImpairment(ctx, st, s.node, s.iface, s.imp)
	return err
}
