package config

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseImpairmentValues(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
	}{{"100mbit", 100_000_000}, {"1gbit", 1_000_000_000}, {"1.5Gbit", 1_500_000_000}, {"64kbit", 64_000}, {" 10mbit ", 10_000_000}} {
		if got, err := ParseRate(c.in); err != nil || got != c.want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
		if got, _ := ParseRate(FormatRate(c.want)); got != c.want {
			t.Errorf("ParseRate(FormatRate(%d)) = %d", c.want, got)
		}
	}
	for _, bad := range []string{"", "100", "mbit", "-1mbit", "100mb", "0kbit", "NaNmbit", "1e20gbit", "100 apples"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
	for in, want := range map[string]float64{"1%": 1, "0.5%": 0.5, "100%": 100, "0": 0, "5": 5} {
		if got, err := ParseLoss(in); err != nil || got != want {
			t.Errorf("ParseLoss(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "%", "101%", "-1%", "NaN%", "Inf", "one%"} {
		if _, err := ParseLoss(bad); err == nil {
			t.Errorf("ParseLoss(%q) accepted", bad)
		}
	}
	if d, err := ParseDelay("20ms"); err != nil || d != 20*time.Millisecond {
		t.Errorf("ParseDelay(20ms) = %v, %v", d, err)
	}
	for _, bad := range []string{"", "20", "-5ms", "soon"} {
		if _, err := ParseDelay(bad); err == nil {
			t.Errorf("ParseDelay(%q) accepted", bad)
		}
	}
}

func TestImpairmentValidateAndString(t *testing.T) {
	good := Impairment{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 1, Rate: 100_000_000, Duplicate: 2, Corrupt: 0.1}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := good.String(), "delay 20ms jitter 5ms loss 1% rate 100mbit duplicate 2% corrupt 0.1%"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := (Impairment{}).String(); got != "-" {
		t.Errorf("zero String() = %q", got)
	}
	for _, c := range []struct {
		imp  Impairment
		want string
	}{
		{Impairment{Delay: -1}, "negative"},
		{Impairment{Delay: time.Millisecond, Jitter: 2 * time.Millisecond}, "more than the delay"},
		{Impairment{Loss: 100.5}, "0% to 100%"},
		{Impairment{Duplicate: -1}, "duplicate -1% is not from"},
		{Impairment{Corrupt: 101}, "corrupt 101% is not from"},
	} {
		if err := c.imp.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want %q", c.imp, err, c.want)
		}
	}
	// a node config keeps it across a restart: JSON round trip
	n := Node{Node: "node1", Impairment: &good}
	data, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	var back Node
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Impairment == nil || *back.Impairment != good {
		t.Errorf("round trip: %+v, want %+v", back.Impairment, good)
	}
}

func FuzzParseImpairmentValues(f *testing.F) {
	for _, s := range []string{"100mbit", "1.5gbit", "1%", "100%", "20ms", "-1", "NaN", "1e309kbit"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := ParseRate(s); err == nil {
			if r < 1000 {
				t.Fatalf("ParseRate(%q) = %d below 1kbit", s, r)
			}
			if _, err := ParseRate(FormatRate(r)); err != nil {
				t.Fatalf("FormatRate(%d) = %q unparsable: %v", r, FormatRate(r), err)
			}
		}
		if l, err := ParseLoss(s); err == nil && (l < 0 || l > 100) {
			t.Fatalf("ParseLoss(%q) = %v", s, l)
		}
		if d, err := ParseDelay(s); err == nil && d < 0 {
			t.Fatalf("ParseDelay(%q) = %v", s, d)
		}
	})
}

// Set reads each setting by its name, as the lab file, the scenario step
// and link set's flags give them, and refuses unknown names.
func TestImpairmentSet(t *testing.T) {
	var got Impairment
	for name, v := range map[string]string{"delay": "20ms", "jitter": "5ms", "loss": "1%", "rate": "100mbit", "duplicate": "2%", "corrupt": "0.5%"} {
		if err := got.Set(name, v); err != nil {
			t.Fatalf("Set(%s, %s): %v", name, v, err)
		}
	}
	want := Impairment{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 1, Rate: 100_000_000, Duplicate: 2, Corrupt: 0.5}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if len(ImpairmentSettings) != 6 {
		t.Errorf("ImpairmentSettings = %v", ImpairmentSettings)
	}
	if err := got.Set("latency", "1ms"); err == nil || !strings.Contains(err.Error(), "unknown impairment") {
		t.Errorf("Set(latency) = %v", err)
	}
	if err := got.Set("loss", "101%"); err == nil {
		t.Error("Set(loss, 101%) accepted")
	}
}
