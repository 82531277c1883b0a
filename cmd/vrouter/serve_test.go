package main

import (
	"strings"
	"testing"
)

func TestCheckServeAddr(t *testing.T) {
	for _, c := range []struct {
		addr   string
		remote bool
		ok     bool
	}{
		{"127.0.0.1:9091", false, true},
		{"127.1.2.3:9091", false, true},
		{"[::1]:9091", false, true},
		{"localhost:9091", false, true},
		{"[::ffff:127.0.0.1]:9091", false, true},
		{":9091", false, false},
		{"0.0.0.0:9091", false, false},
		{"192.168.1.5:9091", false, false},
		{"example.com:9091", false, false},
		{"0.0.0.0:9091", true, true},
		{":9091", true, true},
		{"127.0.0.1", false, false},
		{"127.0.0.1:", false, false},
	} {
		err := checkServeAddr(c.addr, c.remote)
		if (err == nil) != c.ok {
			t.Errorf("checkServeAddr(%q, allowRemote %v) = %v, want ok %v", c.addr, c.remote, err, c.ok)
		}
		if err != nil && c.addr == "0.0.0.0:9091" && !strings.Contains(err.Error(), "--allow-remote") {
			t.Errorf("refusal %q does not say how to allow it", err)
		}
	}
}

// TestServeNeedsMetrics: serve with nothing to serve says what to give,
// and a remote address is refused before anything listens.
func TestServeNeedsMetrics(t *testing.T) {
	if _, err := run(t, "serve"); err == nil || !strings.Contains(err.Error(), "--metrics") {
		t.Errorf("serve without --metrics: %v", err)
	}
	if _, err := run(t, "serve", "--metrics", "0.0.0.0:0"); err == nil || !strings.Contains(err.Error(), "--allow-remote") {
		t.Errorf("serve --metrics 0.0.0.0:0: %v", err)
	}
}
