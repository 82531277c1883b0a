package dataplane

// IPv4 options (RFC 791), checked and updated as Linux's
// net/ipv4/ip_options.c does for a forwarded packet.

const (
	optEnd   = 0
	optNOP   = 1
	optRR    = 7   // record route
	optTS    = 68  // timestamp
	optSEC   = 130 // security
	optLSRR  = 131 // loose source route
	optCIPSO = 134
	optSSRR  = 137 // strict source route
	optRA    = 148 // router alert

	tsOnly    = 0 // timestamp flags
	tsAndAddr = 1
	tsPrespec = 3
)

// ipOptions locates the options of a header that need attention; each
// field is the option's offset in the header, 0 when absent.
type ipOptions struct {
	rr, ts, srr int
	end         int // first END option; every byte after it must be END
}

// compileOptions checks the options of hdr (len(hdr) is the header length,
// above 20) as Linux's ip_options_compile does for a received packet. It
// returns the options, or the offset in the header of the offending byte
// (pp > 0) for an ICMP parameter problem.
func compileOptions(hdr []byte) (o ipOptions, pp int) {
	i := ipHeaderLen
	for i < len(hdr) {
		switch hdr[i] {
		case optEnd:
			o.end = i
			return o, 0
		case optNOP:
			i++
			continue
		}
		left := len(hdr) - i
		if left < 2 {
			return o, i
		}
		n := int(hdr[i+1])
		if n < 2 || n > left {
			return o, i
		}
		opt := hdr[i : i+n]
		switch opt[0] {
		case optLSRR, optSSRR:
			if n < 3 {
				return o, i + 1
			}
			if opt[2] < 4 {
				return o, i + 2
			}
			if o.srr != 0 {
				return o, i
			}
			o.srr = i
		case optRR:
			if o.rr != 0 {
				return o, i
			}
			if n < 3 {
				return o, i + 1
			}
			if opt[2] < 4 {
				return o, i + 2
			}
			if p := int(opt[2]); p <= n && p+3 > n {
				return o, i + 2
			}
			o.rr = i
		case optTS:
			if o.ts != 0 {
				return o, i
			}
			if n < 4 {
				return o, i + 1
			}
			if opt[2] < 5 {
				return o, i + 2
			}
			if p := int(opt[2]); p <= n {
				if p+3 > n {
					return o, i + 2
				}
				if f := opt[3] & 0xf; (f == tsAndAddr || f == tsPrespec) && p+7 > n {
					return o, i + 2
				}
			} else if opt[3]>>4 == 15 {
				return o, i + 3
			}
			o.ts = i
		case optRA:
			if n < 4 {
				return o, i + 1
			}
		case optCIPSO:
			// cipso_v4_validate rejects every CIPSO option while no
			// domain of interpretation is configured, as by default.
			if n < 8 {
				return o, i + 1
			}
			return o, i + 2
		}
		i += n
	}
	return o, 0
}

// optionEnv is what forwardOptions writes into the options of a forwarded
// packet.
type optionEnv struct {
	out   uint32   // the router's source address toward the destination (record route)
	spec  uint32   // the router's source address toward the packet's source (timestamp with address)
	ps    *portSet // the router's addresses (prespecified timestamp)
	msUTC uint32   // milliseconds since midnight UT
}

// forwardOptions updates the options of a forwarded packet's header as
// Linux does (ip_options_compile with a route, then ip_forward_options):
// bytes after END become END, record route gets the outgoing address and
// the timestamp option a timestamp, its address or its overflow count. It
// reports whether the header changed; its checksum is then stale.
func forwardOptions(hdr []byte, o ipOptions, env *optionEnv) bool {
	changed := false
	if o.end != 0 {
		for j := o.end + 1; j < len(hdr); j++ {
			if hdr[j] != optEnd {
				hdr[j] = optEnd
				changed = true
			}
		}
	}
	if o.rr != 0 {
		opt := hdr[o.rr:]
		if p := int(opt[2]); p <= int(opt[1]) {
			put32(opt[p-1:], env.out)
			opt[2] += 4
			changed = true
		}
	}
	if o.ts != 0 {
		opt := hdr[o.ts:]
		n, p := int(opt[1]), int(opt[2])
		switch {
		case p > n:
			ovf := opt[3] >> 4
			opt[3] = opt[3]&0xf | (ovf+1)<<4
			changed = true
		case opt[3]&0xf == tsOnly:
			put32(opt[p-1:], env.msUTC)
			opt[2] += 4
			changed = true
		case opt[3]&0xf == tsAndAddr:
			put32(opt[p-1:], env.spec)
			put32(opt[p+3:], env.msUTC)
			opt[2] += 8
			changed = true
		case opt[3]&0xf == tsPrespec:
			// Linux stamps when inet_addr_type(addr) is not RTN_UNICAST.
			if a := be32(opt[p-1:]); isZeroNet(a) || a == limitedBroadcast || isMulticast(a) || env.ps.isLocal(a) {
				put32(opt[p+3:], env.msUTC)
				opt[2] += 8
				changed = true
			}
		}
	}
	return changed
}

// fragmentOptions replaces the options whose copied flag is clear by NOPs,
// as Linux's ip_options_fragment does for every fragment after the first.
func fragmentOptions(hdr []byte) {
	i := ipHeaderLen
	for i < len(hdr) {
		switch hdr[i] {
		case optEnd:
			return
		case optNOP:
			i++
			continue
		}
		if len(hdr)-i < 2 {
			return
		}
		n := int(hdr[i+1])
		if n < 2 || n > len(hdr)-i {
			return
		}
		if hdr[i]&0x80 == 0 {
			for j := i; j < i+n; j++ {
				hdr[j] = optNOP
			}
		}
		i += n
	}
}
