// Package header holds typed views over the bytes of the packet headers
// the dataplane reads and writes, in the style of gVisor's
// pkg/tcpip/header: an [IPv4] or [ICMPv4] is a []byte whose methods read
// and write the header's fields in place, so parsing a packet copies
// nothing and allocates nothing. A view does not check its length on
// every access: callers validate once ([IPv4.IsValid]) and then use the
// accessors, which panic (like any slice index) on a view too short for
// the field.
//
// The package also owns the two codecs more than one package needs:
//
//   - the Internet checksum (RFC 1071) with its incremental update (RFC
//     1624): [Checksum], [Sum], [Fold], [ChecksumUpdate16];
//   - struct virtio_net_hdr, the offload metadata ([GSO]) a TUN device
//     opened with IFF_VNET_HDR puts before every packet:
//     [DecodeVirtioNetHdr] and [GSO.PutVirtioNetHdr] in the host's byte
//     order, as the kernel reads and writes it, and [DecodeGSO] and
//     [GSO.Put] in network byte order, as the fabric's frame and tap
//     headers carry it.
//
// It sits at the bottom of the module: encap, vrouter/fabric and
// vrouter/dataplane import it, it imports nothing of theirs.
package header
