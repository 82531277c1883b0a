package topology

import (
	"strings"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"gopkg.in/yaml.v3"
)

// impairFields are the fields of a node's or router interface's
// impairments, as `vrouter link set` takes them.
var impairFields = config.ImpairmentSettings

// impairment reads an impairments mapping (e.g. {delay: 20ms, jitter: 5ms,
// loss: 1%, rate: 100mbit}) at path: each value checked on its own, then
// the jitter against the delay.
func (p *parser) impairment(n *yaml.Node, path string) val[config.Impairment] {
	line := n.Line
	if n = deref(n); n.Kind != yaml.MappingNode {
		p.errorf(line, path, "must be a mapping (fields: %s, e.g. {delay: 20ms, loss: 1%%}), not %s", strings.Join(impairFields, ", "), kindName(n))
		return val[config.Impairment]{line: line, st: bad}
	}
	r := val[config.Impairment]{line: line, st: ok}
	jitterLine := line
	p.fields(n, path, impairFields, func(key string, v *yaml.Node) {
		f := join(path, key)
		s, l, good := p.scalar(v, f, "leave it out for none")
		if !good {
			r.st = bad
			return
		}
		if key == "jitter" {
			jitterLine = l
		}
		err := r.v.Set(key, s)
		if err != nil {
			p.errorf(l, f, "%v", err)
			r.st = bad
		}
	})
	if r.st == ok && r.v.Jitter > r.v.Delay {
		p.errorf(jitterLine, join(path, "jitter"), "%v is more than the delay (%v): a frame cannot leave early", r.v.Jitter, r.v.Delay)
		r.st = bad
	}
	return r
}
