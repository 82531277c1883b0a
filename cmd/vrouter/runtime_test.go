package main

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/config"
)

// An agent's runtime defaults: GOGC=50 unless GOGC is set, and one P for
// the userspace engine unless GOMAXPROCS is set; the kernel dataplane
// keeps the runtime's default.
func TestAgentRuntimeDefaults(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	gc := debug.SetGCPercent(100)
	t.Cleanup(func() {
		runtime.GOMAXPROCS(procs)
		debug.SetGCPercent(gc)
	})
	for _, c := range []struct {
		name             string
		gogc, gomaxprocs string
		dataplane        string
		wantGC, wantP    int
	}{
		{"userspace, nothing set", "", "", config.DataplaneUserspace, agentGC, 1},
		{"default dataplane, nothing set", "", "", "", agentGC, 1},
		{"kernel, nothing set", "", "", config.DataplaneKernel, agentGC, 3},
		{"userspace, both set", "80", "3", config.DataplaneUserspace, 100, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("GOGC", c.gogc)
			t.Setenv("GOMAXPROCS", c.gomaxprocs)
			runtime.GOMAXPROCS(3)
			debug.SetGCPercent(100)
			agentRuntimeDefaults(&config.Node{Dataplane: c.dataplane})
			if got := debug.SetGCPercent(100); got != c.wantGC {
				t.Errorf("GC percent %d, want %d", got, c.wantGC)
			}
			if got := runtime.GOMAXPROCS(0); got != c.wantP {
				t.Errorf("GOMAXPROCS %d, want %d", got, c.wantP)
			}
		})
	}
}
