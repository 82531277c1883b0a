package metrics

import (
	"bytes"
	"fmt"
	"io"
	"slices"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"
)

// NodeLabel is the label Merge adds to every sample: the node it came from.
const NodeLabel = "node"

// nodeUp is the metric Merge adds: whether each node answered.
const nodeUp = "vrouter_node_up"

// Node is one node's exposition as Merge takes it: the text a node's
// /metrics served, or the error that kept it from answering.
type Node struct {
	Name string
	Text []byte
	Err  error
}

// maxExposition bounds one node's exposition (a node has a few hundred
// series per thousand workloads; 64 MiB is far beyond any lab).
const maxExposition = 64 << 20

// Parse reads a text exposition into its families by name.
func Parse(text []byte) (map[string]*dto.MetricFamily, error) {
	if len(text) > maxExposition {
		return nil, fmt.Errorf("metrics: exposition of %d bytes; at most %d", len(text), maxExposition)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return fams, nil
}

// Merge writes the nodes' expositions as one text exposition: every
// sample gets a node label (replacing one it had), families are sorted by
// name, and vrouter_node_up says, per node, whether it answered with a
// readable exposition. A family whose type differs from one node to the
// next keeps the first node's type; the other samples are left out.
func Merge(w io.Writer, nodes []Node) error {
	merged := map[string]*dto.MetricFamily{}
	up := &dto.MetricFamily{
		Name: proto.String(nodeUp),
		Help: proto.String("1 if the node's agent answered the scrape with readable metrics, else 0."),
		Type: dto.MetricType_GAUGE.Enum(),
	}
	for _, n := range nodes {
		ok := 0.0
		if n.Err == nil {
			fams, err := Parse(n.Text)
			if err == nil {
				ok = 1
				addNode(merged, fams, n.Name)
			}
		}
		up.Metric = append(up.Metric, &dto.Metric{
			Label: []*dto.LabelPair{{Name: proto.String(NodeLabel), Value: proto.String(n.Name)}},
			Gauge: &dto.Gauge{Value: proto.Float64(ok)},
		})
	}
	merged[nodeUp] = up
	names := make([]string, 0, len(merged))
	for name := range merged {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if _, err := expfmt.MetricFamilyToText(w, merged[name]); err != nil {
			return err
		}
	}
	return nil
}

// addNode adds the families of one node to merged, each sample labelled
// with the node.
func addNode(merged, fams map[string]*dto.MetricFamily, node string) {
	for name, f := range fams {
		if name == nodeUp {
			continue
		}
		for _, m := range f.Metric {
			m.Label = slices.DeleteFunc(m.Label, func(l *dto.LabelPair) bool { return l.GetName() == NodeLabel })
			m.Label = append([]*dto.LabelPair{{Name: proto.String(NodeLabel), Value: proto.String(node)}}, m.Label...)
		}
		have, ok := merged[name]
		switch {
		case !ok:
			merged[name] = f
		case have.GetType() == f.GetType():
			have.Metric = append(have.Metric, f.Metric...)
		}
	}
}
