package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Impairment is what a link does to the frames a node or router sends on
// it, as netem and tbf on its egress (`vrouter link set --delay`, a lab
// file's impairments): each frame is lost with probability Loss percent,
// sent no faster than Rate bits per second, and delivered Delay later
// plus or minus up to Jitter. The zero value is a perfect link.
type Impairment struct {
	Delay  time.Duration `json:"delay,omitempty"`
	Jitter time.Duration `json:"jitter,omitempty"`
	Loss   float64       `json:"loss,omitempty"` // percent, 0 to 100
	Rate   uint64        `json:"rate,omitempty"` // bits per second; 0: unlimited
	// Duplicate and Corrupt are the percentages of frames sent twice and
	// of frames with one bit flipped, as netem's duplicate and corrupt.
	Duplicate float64 `json:"duplicate,omitempty"`
	Corrupt   float64 `json:"corrupt,omitempty"`
}

// IsZero reports whether the impairment leaves frames alone.
func (i Impairment) IsZero() bool { return i == Impairment{} }

// ImpairmentSettings names an impairment's settings as the lab file, the
// scenario step and `vrouter link set` (as --flags) name them.
var ImpairmentSettings = []string{"delay", "jitter", "loss", "rate", "duplicate", "corrupt"}

// Set parses value ("20ms", "1%", "100mbit") into the setting called name,
// one of ImpairmentSettings. It checks the value on its own; Validate
// checks the settings against each other.
func (i *Impairment) Set(name, value string) error {
	var err error
	switch name {
	case "delay":
		i.Delay, err = ParseDelay(value)
	case "jitter":
		i.Jitter, err = ParseDelay(value)
	case "loss":
		i.Loss, err = ParseLoss(value)
	case "rate":
		i.Rate, err = ParseRate(value)
	case "duplicate":
		i.Duplicate, err = ParseLoss(value)
	case "corrupt":
		i.Corrupt, err = ParseLoss(value)
	default:
		err = fmt.Errorf("unknown impairment %q (known: %s)", name, strings.Join(ImpairmentSettings, ", "))
	}
	return err
}

// Validate checks the ranges: delay and jitter not negative, jitter not
// above delay (a frame is never early), loss a percentage.
func (i Impairment) Validate() error {
	switch {
	case i.Delay < 0:
		return errors.New("delay must not be negative")
	case i.Jitter < 0:
		return errors.New("jitter must not be negative")
	case i.Jitter > i.Delay:
		return fmt.Errorf("jitter %v is more than the delay %v", i.Jitter, i.Delay)
	case math.IsNaN(i.Loss) || i.Loss < 0 || i.Loss > 100:
		return fmt.Errorf("loss %v%% is not from 0%% to 100%%", i.Loss)
	case math.IsNaN(i.Duplicate) || i.Duplicate < 0 || i.Duplicate > 100:
		return fmt.Errorf("duplicate %v%% is not from 0%% to 100%%", i.Duplicate)
	case math.IsNaN(i.Corrupt) || i.Corrupt < 0 || i.Corrupt > 100:
		return fmt.Errorf("corrupt %v%% is not from 0%% to 100%%", i.Corrupt)
	}
	return nil
}

// String formats the impairment as `tc qdisc show` would, e.g.
// "delay 20ms jitter 5ms loss 1% rate 100mbit"; "-" for none.
func (i Impairment) String() string {
	var parts []string
	if i.Delay > 0 {
		parts = append(parts, "delay "+i.Delay.String())
	}
	if i.Jitter > 0 {
		parts = append(parts, "jitter "+i.Jitter.String())
	}
	if i.Loss > 0 {
		parts = append(parts, "loss "+strconv.FormatFloat(i.Loss, 'g', -1, 64)+"%")
	}
	if i.Rate > 0 {
		parts = append(parts, "rate "+FormatRate(i.Rate))
	}
	if i.Duplicate > 0 {
		parts = append(parts, "duplicate "+strconv.FormatFloat(i.Duplicate, 'g', -1, 64)+"%")
	}
	if i.Corrupt > 0 {
		parts = append(parts, "corrupt "+strconv.FormatFloat(i.Corrupt, 'g', -1, 64)+"%")
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// ParseDelay parses a delay or jitter such as "20ms" or "1.5s" (Go's
// duration syntax); it must not be negative.
func ParseDelay(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 20ms", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

// ParseLoss parses a loss (or duplicate, corrupt) percentage such as "1%",
// "0.5%" or "100%" (the % may be left out); it must be from 0 to 100.
func ParseLoss(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a percentage such as 1%%", s)
	}
	if v < 0 || v > 100 {
		return 0, fmt.Errorf("%q is not from 0%% to 100%%", s)
	}
	return v, nil
}

var rateUnits = []struct {
	suffix string
	mult   uint64
}{
	{"gbit", 1_000_000_000}, {"mbit", 1_000_000}, {"kbit", 1_000}, {"bit", 1},
}

// ParseRate parses a rate as tc writes it: a number and kbit, mbit or gbit
// (or bit), e.g. "100mbit" or "1.5gbit". It must be at least 1 kbit/s.
func ParseRate(s string) (uint64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for _, u := range rateUnits {
		num, ok := strings.CutSuffix(t, u.suffix)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			break
		}
		bits := v * float64(u.mult)
		if bits < 1000 || bits > 1e15 {
			return 0, fmt.Errorf("rate %q is not from 1kbit to 1000000gbit", s)
		}
		return uint64(bits), nil
	}
	return 0, fmt.Errorf("%q is not a rate such as 100mbit (units: kbit, mbit, gbit)", s)
}

// FormatRate formats bits per second as ParseRate reads them, in the
// largest unit that keeps it whole where it can ("100mbit").
func FormatRate(bits uint64) string {
	for _, u := range rateUnits {
		if bits >= u.mult && bits%u.mult == 0 {
			return strconv.FormatUint(bits/u.mult, 10) + u.suffix
		}
	}
	for _, u := range rateUnits {
		if bits >= u.mult {
			return strconv.FormatFloat(float64(bits)/float64(u.mult), 'g', -1, 64) + u.suffix
		}
	}
	return strconv.FormatUint(bits, 10) + "bit"
}
