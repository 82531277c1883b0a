package main

import (
	"os"
	"testing"
)

func TestReadOnlyMappings(t *testing.T) {
	maps := []byte(`00400000-0129c000 r-xp 00000000 fe:00 10019251                           /usr/bin/vrouter
0129c000-023f1000 r--p 00e9c000 fe:00 10019251                           /usr/bin/vrouter
023f1000-02489000 rw-p 01ff1000 fe:00 10019251                           /usr/bin/vrouter
02489000-04a05000 rw-p 00000000 00:00 0
7f0c7edbd000-7f0c7ef13000 r-xp 00026000 fe:00 326269                     /usr/lib/x86_64-linux-gnu/libc.so.6
7f0c7ef13000-7f0c7ef66000 r--s 0017c000 fe:00 10019251                   /usr/bin/vrouter
7f0c00000000-7f0b00000000 r--p 00000000 fe:00 10019251                   /usr/bin/vrouter
zz-7f0c7ef66000 r--p 0017c000 fe:00 10019251                             /usr/bin/vrouter
7f0d00000000-7f0d00001000 r--p 00000000 fe:00 10019251                   /usr/bin/vrouter (deleted)
`)
	got := readOnlyMappings(maps, "/usr/bin/vrouter")
	want := []mapping{{0x400000, 0x129c000}, {0x129c000, 0x23f1000}}
	if len(got) != len(want) {
		t.Fatalf("readOnlyMappings = %x, want %x", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d = %x, want %x", i, got[i], want[i])
		}
	}
}

// dropStartupPages runs on this test binary: the process keeps running
// (only read-only pages are dropped) and its executable's pages are found.
func TestDropStartupPages(t *testing.T) {
	n, err := dropStartupPages()
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no read-only mapping of the executable found")
	}
	// Code and read-only data still work after the drop.
	if _, err := os.ReadFile("/proc/self/maps"); err != nil {
		t.Fatal(err)
	}
	if got := readOnlyMappings([]byte("1000-2000 r--p 0 0:0 1 /x\n"), "/x"); len(got) != 1 {
		t.Fatalf("after the drop: %v", got)
	}
}

func FuzzReadOnlyMappings(f *testing.F) {
	f.Add([]byte("00400000-0129c000 r-xp 00000000 fe:00 1 /x\n02489000-04a05000 rw-p 00000000 00:00 0\n"))
	f.Add([]byte("1-0 r--p 0 0 0 /x\n-\n"))
	f.Fuzz(func(t *testing.T, maps []byte) {
		for _, m := range readOnlyMappings(maps, "/x") {
			if m.end <= m.start {
				t.Fatalf("empty or reversed mapping %x", m)
			}
		}
	})
}
