package lab

import (
	"context"
	"fmt"
	"sync"

	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/metrics"
)

// metricsParallel bounds the scrapes Metrics runs at once.
const metricsParallel = 16

// Metrics fetches the Prometheus metrics (text exposition) of the named
// nodes of a deployed lab, of every node when names is empty, in the
// lab's order of nodes. A node whose agent does not answer has its error
// in Node.Err; a name that is no node of the lab is an error.
func Metrics(ctx context.Context, st *State, names ...string) ([]metrics.Node, error) {
	nodes := st.Nodes
	if len(names) > 0 {
		nodes = nil
		for _, name := range names {
			n, ok := st.Node(name)
			if !ok {
				if _, isRouter := st.Router(name); isRouter {
					return nil, fmt.Errorf("%s is a router: only nodes (agents) export metrics", name)
				}
				return nil, fmt.Errorf("lab %s has no node %s", st.Name, name)
			}
			nodes = append(nodes, n)
		}
	}
	out := make([]metrics.Node, len(nodes))
	sem := make(chan struct{}, metricsParallel)
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			text, err := control.NewClient(n.Control).Metrics(ctx)
			out[i] = metrics.Node{Name: n.Name, Text: []byte(text), Err: err}
		}()
	}
	wg.Wait()
	return out, nil
}
