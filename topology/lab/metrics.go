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
// nodes and routers of a deployed lab (router nodes and external routers'
// forwarders export their engines' counters and routes), of all of them
// when names is empty: the nodes first, then the routers, in the lab's
// order. One whose process does not answer has its error in Node.Err; a
// name that is no node or router of the lab is an error.
func Metrics(ctx context.Context, st *State, names ...string) ([]metrics.Node, error) {
	type target struct {
		name string
		c    *control.Client
	}
	var targets []target
	if len(names) == 0 {
		for _, n := range st.Nodes {
			targets = append(targets, target{n.Name, control.NewClient(n.Control)})
		}
		for _, r := range st.Routers {
			targets = append(targets, target{r.Name, control.NewRouterClient(r.Control)})
		}
	}
	for _, name := range names {
		if n, ok := st.Node(name); ok {
			targets = append(targets, target{n.Name, control.NewClient(n.Control)})
		} else if r, ok := st.Router(name); ok {
			targets = append(targets, target{r.Name, control.NewRouterClient(r.Control)})
		} else {
			return nil, fmt.Errorf("lab %s has no node or router %s", st.Name, name)
		}
	}
	out := make([]metrics.Node, len(targets))
	sem := make(chan struct{}, metricsParallel)
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			text, err := t.c.Metrics(ctx)
			out[i] = metrics.Node{Name: t.name, Text: []byte(text), Err: err}
		}()
	}
	wg.Wait()
	return out, nil
}
