package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Agent memory: most of an idle agent's resident memory is not its own but
// pages of this (large, multi-command) binary: 26 of 35 MB, measured in a
// 12-node lab, because start-up (package initialisers, GoBGP's protobuf
// descriptors, the first BGP session) runs code and reads tables all over
// the text and read-only data, and the kernel maps each fault's
// neighbouring cached pages too (fault-around, 64 KiB). Those pages are
// shared with every other agent through the page cache, so the system pays
// for them once, but they count in each agent's RSS for its whole life.
//
// dropStartupPages unmaps the binary's read-only segments from the agent
// once it is past start-up (madvise MADV_DONTNEED on the executable's r-x
// and r-- mappings): the pages stay in the page cache, and the ones the
// agent still uses (BGP keepalives, the engine, the GC) are mapped again on
// their next touch. Writable mappings are never touched (that would lose
// their contents). Measured (docs/benchmarks.md, Scale): file-backed RSS
// falls from ~26 to ~6 MB, and grows back to the agent's working set,
// 11-16 MB at fault-around granularity, within a few minutes (the forced
// GC every 2 minutes touches much of it); start-up-only pages stay out.

// startupPagesDelay is how long after start the agent drops the pages:
// past deploy's first BGP sessions and route exchange in a lab.
const startupPagesDelay = 20 * time.Second

// dropStartupPagesLater drops the start-up pages after startupPagesDelay
// unless VROUTER_KEEP_PAGES is set (to compare).
func dropStartupPagesLater() {
	if os.Getenv("VROUTER_KEEP_PAGES") != "" {
		return
	}
	time.AfterFunc(startupPagesDelay, func() { _, _ = dropStartupPages() })
}

// dropStartupPages advises the kernel that the executable's read-only
// mappings are not needed now and returns how many bytes it advised.
func dropStartupPages() (int, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("drop start-up pages: %w", err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("drop start-up pages: %w", err)
	}
	total := 0
	for _, m := range readOnlyMappings(maps, exe) {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); errno != 0 {
			return total, fmt.Errorf("drop start-up pages: madvise %#x-%#x: %w", m.start, m.end, errno)
		}
		total += int(m.end - m.start)
	}
	return total, nil
}

// mapping is an address range of /proc/PID/maps.
type mapping struct{ start, end uintptr }

// readOnlyMappings returns the private, non-writable mappings of file in a
// /proc/PID/maps text ("start-end perms offset dev inode path" lines).
// Lines it cannot read are skipped.
func readOnlyMappings(maps []byte, file string) []mapping {
	var out []mapping
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || strings.Join(f[5:], " ") != file {
			continue
		}
		perms := f[1]
		if len(perms) != 4 || perms[0] != 'r' || perms[1] != '-' || perms[3] != 'p' {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, mapping{uintptr(start), uintptr(end)})
	}
	return out
}
