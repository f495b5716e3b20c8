// Package frames builds Ethernet frames of exact lengths, with VLAN tags
// and a payload that shows where each byte came from: for the program's
// tests, the replay corpus (testdata/gen) and ringbench's traffic.
package frames

import (
	"net"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Spec describes a frame.
type Spec struct {
	// Tags are the VLAN tag protocols, outermost first: at most two of
	// layers.EthernetTypeDot1Q and layers.EthernetTypeQinQ.
	Tags []layers.EthernetType
	// EtherType is the L3 protocol: IPv4 (the zero value), IPv6, ARP, or
	// any other, whose packet is then L3Len bytes of payload.
	EtherType layers.EthernetType
	// L3Len is the length of the L3 packet after the Ethernet header and
	// the tags. ARP packets are always 28 bytes.
	L3Len int
}

// Build returns the frame's bytes: Ethernet, the tags, the L3 header and a
// payload whose bytes depend on their offset, so that a copy from the
// wrong place cannot go unnoticed. Ethernet pads frames to 60 bytes.
func (f Spec) Build() []byte {
	l3 := f.EtherType
	if l3 == 0 {
		l3 = layers.EthernetTypeIPv4
	}
	eth := &layers.Ethernet{
		SrcMAC: []byte{0x02, 0, 0, 0, 0, 1},
		DstMAC: []byte{0x02, 0, 0, 0, 0, 2},
	}
	stack := []gopacket.SerializableLayer{eth}
	next := &eth.EthernetType
	for i, proto := range f.Tags {
		*next = proto
		tag := &layers.Dot1Q{VLANIdentifier: uint16(100 + i)}
		stack = append(stack, tag)
		next = &tag.Type
	}
	*next = l3
	payload := func(n int) gopacket.Payload {
		if n < 0 {
			panic("frames: L3Len below the L3 header")
		}
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i % 251)
		}
		return p
	}
	switch l3 {
	case layers.EthernetTypeIPv4:
		stack = append(stack, &layers.IPv4{
			Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: []byte{198, 18, 0, 1}, DstIP: []byte{198, 18, 0, 2},
		}, payload(f.L3Len-20))
	case layers.EthernetTypeIPv6:
		stack = append(stack, &layers.IPv6{
			Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolNoNextHeader,
			SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2"),
		}, payload(f.L3Len-40))
	case layers.EthernetTypeARP:
		stack = append(stack, &layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
			HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
			SourceHwAddress: eth.SrcMAC, SourceProtAddress: []byte{198, 18, 0, 1},
			DstHwAddress: make([]byte, 6), DstProtAddress: []byte{198, 18, 0, 2},
		})
	default:
		stack = append(stack, payload(f.L3Len))
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, stack...); err != nil {
		panic(err)
	}
	return buf.Bytes()
}
