package main

import (
	"net"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Addresses of the protocol corpus: IPv4 from 198.18.0.0/15 and IPv6
// from 2001:2::/48, the benchmarking ranges, so that a test may send any
// of its unicast frames between its own namespaces.
var (
	macA   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	macB   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x09}
	macBC  = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	ipA    = net.IP{198, 18, 0, 1}
	ipB    = net.IP{198, 18, 0, 9}
	ipDNS  = net.IP{198, 18, 0, 53}
	ipFar  = net.IP{198, 19, 1, 1}
	ipFar2 = net.IP{198, 19, 2, 2}
	ip6A   = net.ParseIP("2001:2::1")
	ip6B   = net.ParseIP("2001:2::9")
)

func etherHdr(src, dst net.HardwareAddr, et layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: et}
}

func ip4Hdr(src, dst net.IP, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: src, DstIP: dst, Id: 1}
}

func ip6Hdr(src, dst net.IP, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: src, DstIP: dst}
}

func tcp(src, dst layers.TCPPort, flags string, ip gopacket.NetworkLayer) *layers.TCP {
	t := &layers.TCP{SrcPort: src, DstPort: dst, Seq: 1000, Window: 65535, DataOffset: 5}
	for _, f := range flags {
		switch f {
		case 'S':
			t.SYN = true
		case 'A':
			t.ACK = true
		case 'F':
			t.FIN = true
		case 'R':
			t.RST = true
		case 'P':
			t.PSH = true
		case 'U':
			t.URG = true
		}
	}
	t.SetNetworkLayerForChecksum(ip)
	return t
}

func udp(src, dst layers.UDPPort, ip gopacket.NetworkLayer) *layers.UDP {
	u := &layers.UDP{SrcPort: src, DstPort: dst}
	u.SetNetworkLayerForChecksum(ip)
	return u
}

// payload is n bytes that say where they are, as bpf/frames' are.
func payload(n int) gopacket.Payload {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i % 251)
	}
	return p
}

// build serializes a stack of layers into a frame on interface 0.
func build(stack ...gopacket.SerializableLayer) frame {
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, stack...); err != nil {
		fail(err)
	}
	return frame{data: buf.Bytes()}
}

// protocols is the corpus that filter expressions are tried on: a frame
// or more of each kind pcap-filter(7) can tell apart, 60 bytes to jumbo.
func protocols() []frame {
	var c corpus
	tcpFrames(&c)
	dnsFrames(&c)
	fragmentFrames(&c)
	icmpFrames(&c)
	tunnelFrames(&c)
	ipv6Frames(&c)
	arpFrames(&c)
	vlanFrames(&c)
	broadcastFrames(&c)
	notIPFrames(&c)
	jumboTCPFrames(&c)
	return c
}

// corpus collects frames built from stacks of layers.
type corpus []frame

func (c *corpus) add(stack ...gopacket.SerializableLayer) { *c = append(*c, build(stack...)) }

// tcpFrames adds a TCP handshake with options, data, the end, a reset.
func tcpFrames(c *corpus) {
	ip := ip4Hdr(ipA, ipB, layers.IPProtocolTCP)
	syn := tcp(40000, 443, "S", ip)
	syn.Options = []layers.TCPOption{
		{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
		{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
		{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{0, 0, 0, 1, 0, 0, 0, 0}},
		{OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
	}
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv4), ip, syn)
	ip = ip4Hdr(ipB, ipA, layers.IPProtocolTCP)
	c.add(etherHdr(macB, macA, layers.EthernetTypeIPv4), ip, tcp(443, 40000, "SA", ip))
	ip = ip4Hdr(ipA, ipB, layers.IPProtocolTCP)
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv4), ip, tcp(40000, 443, "PA", ip), payload(1200))
	ip = ip4Hdr(ipA, ipB, layers.IPProtocolTCP)
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv4), ip, tcp(40000, 443, "FA", ip))
	ip = ip4Hdr(ipB, ipA, layers.IPProtocolTCP)
	c.add(etherHdr(macB, macA, layers.EthernetTypeIPv4), ip, tcp(443, 40000, "R", ip))
	ip = ip4Hdr(ipFar, ipB, layers.IPProtocolTCP)
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv4), ip, tcp(51000, 80, "PAU", ip), payload(100))
	ip = ip4Hdr(ipFar2, ipB, layers.IPProtocolTCP)
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv4), ip, tcp(52000, 8080, "A", ip), payload(1460))
	ip = ip4Hdr(ipA, ipFar, layers.IPProtocolTCP)
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv4), ip, tcp(22, 1022, "A", ip))
}

// dnsFrames adds DNS over UDP in IPv4 with an option (router alert),
// and DNS over TCP.
func dnsFrames(c *corpus) {
	ip := ip4Hdr(ipA, ipDNS, layers.IPProtocolUDP)
	ip.Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}}
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv4), ip, udp(33333, 53, ip), payload(40))
	ip = ip4Hdr(ipDNS, ipA, layers.IPProtocolUDP)
	c.add(etherHdr(macB, macA, layers.EthernetTypeIPv4), ip, udp(53, 33333, ip), payload(300))
	ip = ip4Hdr(ipA, ipDNS, layers.IPProtocolTCP)
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv4), ip, tcp(40005, 53, "PA", ip), payload(60))
}

// fragmentFrames adds a UDP datagram in two fragments: the second has
// no UDP header, and its first bytes look like port 53.
func fragmentFrames(c *corpus) {
	ip := ip4Hdr(ipFar, ipDNS, layers.IPProtocolUDP)
	ip.Flags = layers.IPv4MoreFragments
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv4), ip, udp(53, 53, ip), payload(1472))
	ip = ip4Hdr(ipFar, ipDNS, layers.IPProtocolUDP)
	ip.FragOffset = 185
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv4), ip, gopacket.Payload{0, 53, 0, 53, 0, 8, 0, 0}, payload(500))
}

// icmpFrames adds ICMP echo request and reply, and unreachable.
func icmpFrames(c *corpus) {
	ip := ip4Hdr(ipA, ipB, layers.IPProtocolICMPv4)
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv4), ip,
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1}, payload(56))
	ip = ip4Hdr(ipB, ipA, layers.IPProtocolICMPv4)
	c.add(etherHdr(macB, macA, layers.EthernetTypeIPv4), ip,
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoReply, 0), Id: 7, Seq: 1}, payload(56))
	ip = ip4Hdr(ipB, ipA, layers.IPProtocolICMPv4)
	c.add(etherHdr(macB, macA, layers.EthernetTypeIPv4), ip,
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort)}, payload(28))
	// A large echo request: ping -s 2000.
	ip = ip4Hdr(ipA, ipB, layers.IPProtocolICMPv4)
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv4), ip,
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 2}, payload(1900))
}

// tunnelFrames adds GRE, VXLAN and Geneve, each around an inner frame.
func tunnelFrames(c *corpus) {
	ip := ip4Hdr(ipFar, ipFar2, layers.IPProtocolGRE)
	inner := ip4Hdr(ipA, ipB, layers.IPProtocolICMPv4)
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv4), ip, &layers.GRE{Protocol: layers.EthernetTypeIPv4}, inner,
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0)}, payload(32))
	ip = ip4Hdr(ipFar, ipFar2, layers.IPProtocolUDP)
	inner = ip4Hdr(ipA, ipB, layers.IPProtocolTCP)
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv4), ip, udp(49152, 4789, ip), &layers.VXLAN{ValidIDFlag: true, VNI: 42},
		etherHdr(macA, macB, layers.EthernetTypeIPv4), inner, tcp(40001, 443, "S", inner))
	ip = ip4Hdr(ipFar, ipFar2, layers.IPProtocolUDP)
	inner = ip4Hdr(ipA, ipDNS, layers.IPProtocolUDP)
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv4), ip, udp(49153, 6081, ip),
		&layers.Geneve{Protocol: layers.EthernetTypeTransparentEthernetBridging, VNI: 43},
		etherHdr(macA, macB, layers.EthernetTypeIPv4), inner, udp(33334, 53, inner), payload(30))
	// A jumbo VXLAN frame, as an overlay with a 9000-byte MTU carries.
	ip = ip4Hdr(ipFar, ipFar2, layers.IPProtocolUDP)
	inner = ip4Hdr(ipA, ipB, layers.IPProtocolUDP)
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv4), ip, udp(49154, 4789, ip), &layers.VXLAN{ValidIDFlag: true, VNI: 42},
		etherHdr(macA, macB, layers.EthernetTypeIPv4), inner, udp(5000, 5001, inner), payload(7900))
}

// ipv6Frames adds IPv6: TCP, UDP, extension headers, a fragment, ICMPv6.
func ipv6Frames(c *corpus) {
	ip6 := ip6Hdr(ip6A, ip6B, layers.IPProtocolTCP)
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv6), ip6, tcp(40002, 443, "S", ip6))
	ip6 = ip6Hdr(ip6B, ip6A, layers.IPProtocolUDP)
	c.add(etherHdr(macB, macA, layers.EthernetTypeIPv6), ip6, udp(53, 33335, ip6), payload(200))
	ip6 = ip6Hdr(ip6A, ip6B, layers.IPProtocolIPv6HopByHop)
	hop := &layers.IPv6HopByHop{}
	hop.NextHeader = layers.IPProtocolUDP
	// Router alert, then PadN to a multiple of 8 bytes.
	hop.Options = []*layers.IPv6HopByHopOption{{OptionType: 5, OptionLength: 2, OptionData: []byte{0, 0}}, {OptionType: 1}}
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv6), ip6, hop, udp(33336, 53, ip6), payload(40))
	ip6 = ip6Hdr(ip6A, ip6B, layers.IPProtocolIPv6Destination)
	dst := &layers.IPv6Destination{}
	dst.NextHeader = layers.IPProtocolTCP
	dst.Options = []*layers.IPv6DestinationOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv6), ip6, dst, tcp(40003, 80, "S", ip6))
	ip6 = ip6Hdr(ip6A, ip6B, layers.IPProtocolIPv6Fragment)
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv6), ip6,
		&layers.IPv6Fragment{NextHeader: layers.IPProtocolUDP, MoreFragments: true, Identification: 9},
		udp(33337, 53, ip6), payload(1400))
	ip6 = ip6Hdr(ip6A, ip6B, layers.IPProtocolICMPv6)
	icmp6 := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
	icmp6.SetNetworkLayerForChecksum(ip6)
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv6), ip6, icmp6, &layers.ICMPv6Echo{Identifier: 8, SeqNumber: 1}, payload(56))
	// Neighbour solicitation, to the solicited-node multicast group.
	ip6 = ip6Hdr(ip6A, net.ParseIP("ff02::1:ff00:9"), layers.IPProtocolICMPv6)
	icmp6 = &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
	icmp6.SetNetworkLayerForChecksum(ip6)
	c.add(etherHdr(macA, net.HardwareAddr{0x33, 0x33, 0xff, 0, 0, 9}, layers.EthernetTypeIPv6), ip6, icmp6,
		&layers.ICMPv6NeighborSolicitation{TargetAddress: ip6B})
	ip6 = ip6Hdr(ip6A, ip6B, layers.IPProtocolUDP)
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv6), ip6, udp(5000, 5001, ip6), payload(7952))
}

// arpFrames adds an ARP broadcast request and a unicast reply.
func arpFrames(c *corpus) {
	c.add(etherHdr(macA, macBC, layers.EthernetTypeARP), &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: macA, SourceProtAddress: ipA,
		DstHwAddress: make(net.HardwareAddr, 6), DstProtAddress: ipB,
	})
	c.add(etherHdr(macB, macA, layers.EthernetTypeARP), &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPReply, SourceHwAddress: macB, SourceProtAddress: ipB,
		DstHwAddress: macA, DstProtAddress: ipA,
	})
}

// vlanFrames adds 802.1Q, and 802.1ad outside 802.1Q (QinQ).
func vlanFrames(c *corpus) {
	ip := ip4Hdr(ipA, ipB, layers.IPProtocolTCP)
	c.add(etherHdr(macA, macB, layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4},
		ip, tcp(40004, 443, "PA", ip), payload(1600))
	ip = ip4Hdr(ipA, ipDNS, layers.IPProtocolUDP)
	c.add(etherHdr(macA, macB, layers.EthernetTypeQinQ), &layers.Dot1Q{VLANIdentifier: 200, Type: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4}, ip, udp(33338, 53, ip), payload(40))
	ip6 := ip6Hdr(ip6A, ip6B, layers.IPProtocolUDP)
	c.add(etherHdr(macA, macB, layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 300, Type: layers.EthernetTypeIPv6},
		ip6, udp(33339, 53, ip6), payload(20))
}

// broadcastFrames adds broadcast and multicast.
func broadcastFrames(c *corpus) {
	ip := ip4Hdr(net.IP{0, 0, 0, 0}, net.IP{255, 255, 255, 255}, layers.IPProtocolUDP)
	c.add(etherHdr(macA, macBC, layers.EthernetTypeIPv4), ip, udp(68, 67, ip), payload(300))
	ip = ip4Hdr(ipA, net.IP{224, 0, 0, 251}, layers.IPProtocolUDP)
	c.add(etherHdr(macA, net.HardwareAddr{0x01, 0, 0x5e, 0, 0, 0xfb}, layers.EthernetTypeIPv4), ip, udp(5353, 5353, ip), payload(60))
}

// notIPFrames adds what is not IP: MPLS, LLDP, a local experimental
// EtherType, 802.3 with LLC (spanning tree).
func notIPFrames(c *corpus) {
	ip := ip4Hdr(ipA, ipB, layers.IPProtocolUDP)
	c.add(etherHdr(macA, macB, layers.EthernetTypeMPLSUnicast), &layers.MPLS{Label: 100, StackBottom: true, TTL: 64},
		ip, udp(5000, 5001, ip), payload(100))
	c.add(etherHdr(macA, net.HardwareAddr{0x01, 0x80, 0xc2, 0, 0, 0x0e}, layers.EthernetTypeLinkLayerDiscovery), payload(60))
	c.add(etherHdr(macA, macB, layers.EthernetType(0x88b5)), payload(1600))
	c.add(etherHdr(macA, net.HardwareAddr{0x01, 0x80, 0xc2, 0, 0, 0}, layers.EthernetTypeLLC),
		&layers.LLC{DSAP: 0x42, SSAP: 0x42, Control: 3}, payload(35))
}

// jumboTCPFrames adds jumbo frames: 9000 bytes of IPv4 from afar, to a
// web server.
func jumboTCPFrames(c *corpus) {
	ip := ip4Hdr(ipFar2, ipB, layers.IPProtocolTCP)
	c.add(etherHdr(macA, macB, layers.EthernetTypeIPv4), ip, tcp(53000, 443, "A", ip), payload(8960))
}
