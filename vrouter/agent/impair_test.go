package agent

import (
	"errors"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
)

// A kernel-mode node has no fabric endpoint: impairing it is refused with
// ErrImpairmentUnsupported (the lab says so), clearing is no change.
func TestKernelDataplaneImpairmentUnsupported(t *testing.T) {
	var k kernelDataplane
	if err := k.SetImpairment(config.Impairment{Delay: time.Millisecond}); !errors.Is(err, control.ErrImpairmentUnsupported) {
		t.Errorf("SetImpairment on the kernel dataplane: %v, want ErrImpairmentUnsupported", err)
	}
	if err := k.SetImpairment(config.Impairment{}); err != nil {
		t.Errorf("clearing on the kernel dataplane: %v", err)
	}
	if !k.Impairment().IsZero() {
		t.Errorf("the kernel dataplane reports an impairment: %+v", k.Impairment())
	}
}

func TestFabricImpairment(t *testing.T) {
	got := FabricImpairment(config.Impairment{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 25, Rate: 1e8, Duplicate: 50, Corrupt: 10})
	want := fabric.Impairment{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 0.25, Rate: 1e8, Duplicate: 0.5, Corrupt: 0.1}
	if got != want {
		t.Errorf("FabricImpairment = %+v, want %+v", got, want)
	}
}
