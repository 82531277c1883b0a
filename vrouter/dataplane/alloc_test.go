package dataplane_test

import (
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
)

// TestNoAllocs checks that no path of Forward and Fragment allocates.
func TestNoAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	f, _ := newLab(t, nil)
	icmp := make([]byte, dataplane.MaxICMPErrorLen)
	fragBuf := make([]byte, 1480)
	cases := []struct {
		name string
		orig []byte
		in   dataplane.PortID
	}{
		{"deliver", ipSpec{src: web1, dst: remote, payload: udp(100)}.pkt(), idCali},
		{"encap", ipSpec{src: web1, dst: remoteTun, payload: udp(100)}.pkt(), idCali},
		{"local", ipSpec{src: web1, dst: nodeAddr, payload: udp(100)}.pkt(), idCali},
		{"time exceeded", ipSpec{ttl: 1, src: web1, dst: remote, payload: udp(100)}.pkt(), idCali},
		{"no route", ipSpec{src: web1, dst: "203.0.113.1", payload: udp(100)}.pkt(), idCali},
		{"frag needed", ipSpec{df: true, src: web1, dst: remoteTun, payload: udp(1480)}.pkt(), idCali},
		{"options", ipSpec{src: web1, dst: remote, opts: []byte{68, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0}}.pkt(), idCali},
		{"bad options", ipSpec{src: web1, dst: remote, opts: []byte{7, 1, 0, 0}}.pkt(), idCali},
		{"malformed", []byte{0x45, 0, 0}, idCali},
	}
	for _, tc := range cases {
		pkt := make([]byte, len(tc.orig))
		n := testing.AllocsPerRun(200, func() {
			copy(pkt, tc.orig)
			f.Forward(pkt, tc.in, icmp)
		})
		if n != 0 {
			t.Errorf("%s: %v allocations per packet", tc.name, n)
		}
	}
	big := ipSpec{src: web1, dst: remote, payload: udp(8980)}.pkt()
	count := 0
	emit := func(b []byte) error { count++; return nil }
	if n := testing.AllocsPerRun(100, func() {
		if err := dataplane.Fragment(big, 1480, fragBuf, emit); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Fragment: %v allocations", n)
	}
	if count == 0 {
		t.Fatal("no fragments")
	}
}

// TestConcurrent forwards from several goroutines while ports come and go;
// run it with -race.
func TestConcurrent(t *testing.T) {
	f, _ := newLab(t, nil)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var done [4]atomic.Int64
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			icmp := make([]byte, 576)
			orig := ipSpec{ttl: byte(1 + g%2), src: remote, dst: web1, payload: udp(64)}.pkt()
			pkt := make([]byte, len(orig))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				copy(pkt, orig)
				d := f.Forward(pkt, idEns33, icmp)
				done[g].Add(1)
				switch d.Action {
				case dataplane.Deliver, dataplane.ICMPError, dataplane.Drop:
				default:
					t.Errorf("%v %v", d.Action, d.Reason)
					return
				}
				if d.Action == dataplane.Deliver && d.Port.Name != "cali717821d73f3" {
					t.Errorf("port %v", d.Port)
					return
				}
			}
		}()
	}
	for i := 0; i < 200 || done[0].Load() < 100 || done[1].Load() < 100 || done[2].Load() < 100 || done[3].Load() < 100; i++ {
		id := dataplane.PortID(100 + i%10)
		if err := f.AddPort(dataplane.Port{ID: id, Name: "caliX" + string(rune('a'+i%10)), Kind: dataplane.PortWorkload, MTU: 1500}); err != nil {
			t.Fatal(err)
		}
		if !f.RemovePort(id) {
			t.Fatal("port vanished")
		}
	}
	if f.RemovePort(idCali) {
		// Packets to the workload now find no port for the route.
		d := f.Forward(ipSpec{src: remote, dst: web1}.pkt(), idEns33, nil)
		if d.Action != dataplane.Drop || d.Reason != dataplane.ReasonUnknownEgress {
			t.Errorf("after removing the port: %v %v", d.Action, d.Reason)
		}
	}
	close(stop)
	wg.Wait()
	s := f.Stats()
	if s.Forwarded == 0 || s.Drops[dataplane.ReasonTTLExceeded] == 0 {
		t.Errorf("stats %v", s.Map())
	}
}

func TestPortsConfig(t *testing.T) {
	tab := labTable(t)
	bad := []struct {
		name  string
		ports []dataplane.Port
	}{
		{"duplicate id", []dataplane.Port{{ID: 1, Name: "a", MTU: 1500}, {ID: 1, Name: "b", MTU: 1500}}},
		{"duplicate name", []dataplane.Port{{ID: 1, Name: "a", MTU: 1500}, {ID: 2, Name: "a", MTU: 1500}}},
		{"no name", []dataplane.Port{{ID: 1, MTU: 1500}}},
		{"MTU below 68", []dataplane.Port{{ID: 1, Name: "a", MTU: 67}}},
		{"MTU above 65535", []dataplane.Port{{ID: 1, Name: "a", MTU: 65536}}},
		{"id too large", []dataplane.Port{{ID: dataplane.MaxPortID, Name: "a", MTU: 1500}}},
		{"IPv6 address", []dataplane.Port{{ID: 1, Name: "a", MTU: 1500, Addr: netip.MustParseAddr("::1")}}},
		{"unknown kind", []dataplane.Port{{ID: 1, Name: "a", MTU: 1500, Kind: 9}}},
	}
	for _, tc := range bad {
		if _, err := dataplane.New(tab, dataplane.Config{Ports: tc.ports}); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if _, err := dataplane.New(nil, dataplane.Config{}); err == nil {
		t.Error("nil table accepted")
	}
	if _, err := dataplane.New(tab, dataplane.Config{Local: []netip.Addr{netip.MustParseAddr("::1")}}); err == nil {
		t.Error("IPv6 local address accepted")
	}

	f, _ := newLab(t, nil)
	if err := f.AddPort(dataplane.Port{ID: idCali, Name: "x", MTU: 1500}); err == nil {
		t.Error("AddPort accepted a duplicate id")
	}
	if f.RemovePort(77) {
		t.Error("RemovePort of a missing port")
	}
	// A new port's address becomes local.
	if err := f.AddPort(dataplane.Port{ID: 40, Name: "eth1", MTU: 9000, Addr: netip.MustParseAddr("198.51.100.1")}); err != nil {
		t.Fatal(err)
	}
	d := f.Forward(ipSpec{src: web1, dst: "198.51.100.1"}.pkt(), idCali, nil)
	if d.Action != dataplane.Local {
		t.Errorf("to a new port's address: %v %v", d.Action, d.Reason)
	}
	p, ok := f.Port(40)
	if !ok || p.Name != "eth1" || p.MTU != 9000 {
		t.Errorf("Port(40) = %v, %v", p, ok)
	}
	ports := f.Ports()
	if len(ports) != len(labPorts())+1 || ports[0].ID != idEns33 || ports[len(ports)-1].ID != 40 {
		t.Errorf("Ports() = %v", ports)
	}
	if err := f.SetPorts(labPorts()[:1]); err != nil {
		t.Fatal(err)
	}
	if d := f.Forward(ipSpec{src: web1, dst: remote}.pkt(), idCali, nil); d.Reason != dataplane.ReasonUnknownIngress {
		t.Errorf("after SetPorts: %v %v", d.Action, d.Reason)
	}
}

func TestStatsMap(t *testing.T) {
	f, _ := newLab(t, noRateLimit)
	f.Forward(ipSpec{src: web1, dst: remote}.pkt(), idCali, nil)
	f.Forward(ipSpec{src: web1, dst: remoteTun}.pkt(), idCali, nil)
	f.Forward(ipSpec{src: web1, dst: nodeAddr}.pkt(), idCali, nil)
	f.Forward(ipSpec{ttl: 1, src: web1, dst: remote}.pkt(), idCali, make([]byte, 576))
	f.Forward(ipSpec{src: web1, dst: "10.244.166.150"}.pkt(), idCali, nil)
	f.Forward([]byte{1}, idCali, nil)
	got := f.Stats().Map()
	want := map[string]uint64{
		"forwarded": 1, "encapsulated": 1, "local": 1, "icmp_errors": 1,
		"drop_ttl_exceeded": 1, "drop_blackhole": 1, "drop_truncated": 1,
	}
	if len(got) != len(want) {
		t.Errorf("Map() = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Map()[%q] = %d, want %d", k, got[k], v)
		}
	}
	for r := range dataplane.NumReasons {
		if name := dataplane.Reason(r).String(); name == "" || strings.HasPrefix(name, "reason(") {
			t.Errorf("reason %d has no name", r)
		}
	}
}
