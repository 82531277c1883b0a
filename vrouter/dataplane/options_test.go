package dataplane_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
)

// pad pads options to a multiple of 4 with END.
func pad(o []byte) []byte { return append(o, make([]byte, (4-len(o)%4)%4)...) }

func TestBadOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    []byte
		pointer byte // offset in the header of the offending byte
	}{
		{"length 1", pad([]byte{7, 1, 4}), 20},
		{"length beyond the header", pad([]byte{130, 9, 0, 0}), 20},
		{"single byte option at the end", []byte{1, 1, 1, 68}, 23},
		{"record route pointer below 4", pad([]byte{7, 7, 3, 0, 0, 0, 0}), 22},
		{"record route length 2", pad([]byte{7, 2}), 21},
		{"record route slot cut short", pad([]byte{7, 6, 4, 0, 0, 0}), 22},
		{"two record routes", []byte{7, 3, 4, 1, 7, 3, 4, 0}, 24},
		{"timestamp length 3", pad([]byte{68, 3, 5}), 21},
		{"timestamp pointer below 5", pad([]byte{68, 8, 4, 0, 0, 0, 0, 0}), 22},
		{"timestamp with address, no room for both", pad([]byte{68, 8, 5, 1, 0, 0, 0, 0}), 22},
		{"timestamp full with overflow 15", pad([]byte{68, 8, 9, 0xf0, 0, 0, 0, 0}), 23},
		{"router alert length 3", pad([]byte{148, 3, 0}), 21},
		{"CIPSO too short", pad([]byte{134, 6, 0, 0, 0, 1}), 21},
		{"CIPSO with an unknown DOI", pad([]byte{134, 8, 0, 0, 0, 1, 0, 0}), 22},
		{"source route pointer below 4", pad([]byte{131, 7, 3, 0, 0, 0, 0}), 22},
		{"NOPs then garbage", []byte{1, 1, 1, 1, 99, 0, 0, 0}, 24},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newLab(t, nil)
			orig := ipSpec{src: web1, dst: remote, opts: tc.opts, payload: udp(30)}.pkt()
			d := f.Forward(bytes.Clone(orig), idCali, make([]byte, 576))
			checkError(t, d, wantError{
				typ: 12, code: 0, src: defaultSrc, dst: web1, tos: icmpTOS(0), info: uint32(tc.pointer) << 24,
				quote: orig, port: idCali, nextHop: web1, reason: dataplane.ReasonBadOptions,
			})
		})
	}
}

func TestSourceRouteRefused(t *testing.T) {
	f, _ := newLab(t, nil)
	for _, typ := range []byte{131, 137} {
		opts := pad([]byte{typ, 7, 4, 10, 244, 104, 5})
		d := f.Forward(ipSpec{src: web1, dst: remote, opts: opts}.pkt(), idCali, make([]byte, 576))
		if d.Action != dataplane.Drop || d.Reason != dataplane.ReasonSourceRoute {
			t.Errorf("option %d: %v %v", typ, d.Action, d.Reason)
		}
	}
	if s := f.Stats(); s.ICMPErrors != 0 {
		t.Errorf("stats %v", s.Map())
	}
}

func TestForwardOptions(t *testing.T) {
	f, clk := newLab(t, nil)
	now := clk.Now() // 10:00:00 UTC
	ms := uint32(10 * time.Hour / time.Millisecond)
	if now.Hour() != 10 || now.Minute() != 0 || now.Nanosecond() != 0 {
		t.Fatal("clock")
	}
	ip := func(s string) []byte { return netip.MustParseAddr(s).AsSlice() }
	be := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	tests := []struct {
		name string
		dst  string
		opts []byte
		want []byte
	}{
		{"record route: egress port address", remote,
			pad([]byte{7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0}),
			pad(cat([]byte{7, 11, 8}, ip(nodeAddr), []byte{0, 0, 0, 0}))},
		{"record route: route's preferred source", "10.96.0.5",
			pad([]byte{7, 7, 4, 0, 0, 0, 0}),
			pad(cat([]byte{7, 7, 8}, ip(prefSrc)))},
		{"record route: port without address gives the default source", web1,
			pad([]byte{7, 7, 4, 0, 0, 0, 0}),
			pad(cat([]byte{7, 7, 8}, ip(defaultSrc)))},
		{"record route full: unchanged", remote,
			pad([]byte{7, 7, 8, 1, 2, 3, 4}),
			pad([]byte{7, 7, 8, 1, 2, 3, 4})},
		{"timestamp only", remote,
			[]byte{68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0},
			cat([]byte{68, 12, 9, 0}, be(ms), []byte{0, 0, 0, 0})},
		{"timestamp and address: address toward the source", remote,
			[]byte{68, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0},
			cat([]byte{68, 12, 13, 1}, ip(defaultSrc), be(ms))},
		{"prespecified timestamp for us", remote,
			cat([]byte{68, 12, 5, 3}, ip(nodeAddr), []byte{0, 0, 0, 0}),
			cat([]byte{68, 12, 13, 3}, ip(nodeAddr), be(ms))},
		{"prespecified timestamp for someone else", remote,
			cat([]byte{68, 12, 5, 3}, ip(node2), []byte{0, 0, 0, 0}),
			cat([]byte{68, 12, 5, 3}, ip(node2), []byte{0, 0, 0, 0})},
		{"timestamp full: overflow counted", remote,
			[]byte{68, 8, 9, 0x20, 9, 9, 9, 9},
			[]byte{68, 8, 9, 0x30, 9, 9, 9, 9}},
		{"bytes after END become END", remote,
			[]byte{1, 0, 7, 7},
			[]byte{1, 0, 0, 0}},
		{"router alert passes", remote,
			[]byte{148, 4, 0, 0},
			[]byte{148, 4, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			orig := ipSpec{src: web1, dst: tc.dst, opts: tc.opts, payload: udp(20)}.pkt()
			d := f.Forward(bytes.Clone(orig), idCali, make([]byte, 576))
			if d.Action != dataplane.Deliver {
				t.Fatalf("%v %v", d.Action, d.Reason)
			}
			want := bytes.Clone(orig)
			hl := 20 + len(tc.opts)
			copy(want[20:], tc.want)
			want[8]--
			want[10], want[11] = 0, 0
			binary.BigEndian.PutUint16(want[10:], rfc1071(want[:hl]))
			if !bytes.Equal(d.Packet, want) {
				t.Errorf("header\n got %x\nwant %x", d.Packet[:hl], want[:hl])
			}
		})
	}
}
