package scenarios

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/config"
)

func TestParseImpairStep(t *testing.T) {
	s, err := Parse("ok.yaml", []byte(labHead+`  - impair: {node: node2, delay: 20ms, jitter: 5ms, loss: 1%, rate: 100mbit}
  - impair: {node: node2, interface: ens33, loss: 5, duplicate: 1%, corrupt: 0.1%}
  - impair: {node: node2, clear: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []impairStep{
		{node: "node2", imp: config.Impairment{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 1, Rate: 100_000_000}},
		{node: "node2", iface: "ens33", imp: config.Impairment{Loss: 5, Duplicate: 1, Corrupt: 0.1}},
		{node: "node2"},
	}
	for i, w := range want {
		st := s.Steps[i+1]
		if got, ok := st.act.(impairStep); !ok || got != w || st.Assert || st.Line != 17+i {
			t.Errorf("step %d: %+v (line %d), want %+v", i+1, st.act, st.Line, w)
		}
	}
	if got := want[0].describe(); got != "impair node2: delay 20ms jitter 5ms loss 1% rate 100mbit" {
		t.Errorf("describe: %q", got)
	}
	if got := want[2].describe(); got != "impair node2: clear" {
		t.Errorf("describe clear: %q", got)
	}

	for _, tc := range []struct{ step, want string }{
		{"impair: node2", "f.yaml:17: steps[1].impair: say what to do to the link"},
		{"impair: {node: node2}", "steps[1].impair: say what to do to the link"},
		{"impair: {node: node9, delay: 1ms}", `steps[1].impair.node: the lab has no node or router "node9"`},
		{"impair: {node: node2, loss: 101%}", `f.yaml:17: steps[1].impair.loss: "101%" is not from 0% to 100%`},
		{"impair: {node: node2, delay: 5ms, jitter: 10ms}", "steps[1].impair.jitter: 10ms is more than the delay (5ms)"},
		{"impair: {node: node2, rate: quick}", `steps[1].impair.rate: "quick" is not a rate`},
		{"impair: {node: node2, delay: -1s}", `steps[1].impair.delay: "-1s" is negative`},
		{"impair: {node: node2, clear: true, delay: 1ms}", "steps[1].impair.clear: clear removes every impairment: give it alone"},
		{"impair: {node: node2, clear: false}", "steps[1].impair.clear: leave it out, or say true"},
		{"impair: {node: node2, delay: 0s}", "steps[1].impair: every impairment is zero"},
		{"impair: {node: node2, lag: 1s}", "steps[1].impair.lag: unknown field"},
	} {
		_, err := Parse("f.yaml", []byte(labHead+"  - "+tc.step+"\n"))
		var ve *topology.ValidationError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.step, err, tc.want)
		}
	}
	// before deploy, as every acting step
	_, err = Parse("f.yaml", []byte(strings.Replace(labHead, "  - deploy:\n", "  - impair: {node: node1, loss: 1%}\n  - deploy:\n", 1)))
	if err == nil || !strings.Contains(err.Error(), "f.yaml:16: steps[0].impair: the lab is not deployed at this step") {
		t.Errorf("impair before deploy: %v", err)
	}
}
