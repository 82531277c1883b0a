package topology

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxCPU bounds the CPU numbers a cpuSet may name.
const MaxCPU = 1023

// ParseCPUSet parses a CPU list in the kernel's cpuset syntax (taskset -c,
// containerlab's cpu-set): comma-separated CPU numbers and ranges, e.g.
// "0", "0-3" or "0,2,4-5". It returns the CPUs sorted, each once.
func ParseCPUSet(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("empty CPU list; write CPUs like \"0\" or \"0-1,3\", or leave the field out")
	}
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := cpuNumber(lo, part)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = cpuNumber(hi, part); err != nil {
				return nil, err
			}
			if b < a {
				return nil, fmt.Errorf("CPU range %q runs backwards; write %d-%d", part, b, a)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	slices.Sort(cpus)
	return slices.Compact(cpus), nil
}

func cpuNumber(s, part string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a CPU number or range (e.g. 0 or 0-3)", part)
	}
	if n > MaxCPU {
		return 0, fmt.Errorf("CPU %d is out of range 0-%d", n, MaxCPU)
	}
	return n, nil
}

// FormatCPUSet writes CPUs back in cpuset syntax, ranges folded: [0 1 2 5]
// is "0-2,5".
func FormatCPUSet(cpus []int) string {
	var b strings.Builder
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(cpus[i]))
		if j > i {
			b.WriteString("-" + strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return b.String()
}
