// Package bpftest holds what ringcap's tests share: the gate for tests that
// need root, and Ethernet frames of exact lengths.
package bpftest

import (
	"os"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// RequirePrivileges skips t when the process cannot load BPF programs, or
// fails it when RINGCAP_REQUIRE_PRIV=1 (CI), where a skip would hide a
// missing test.
func RequirePrivileges(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("RINGCAP_REQUIRE_PRIV") == "1" {
		t.Fatal("test needs root and RINGCAP_REQUIRE_PRIV=1 is set")
	}
	t.Skip("test needs root (set RINGCAP_REQUIRE_PRIV=1 to make this a failure)")
}

// Frame describes a test frame.
type Frame struct {
	// Tags are the VLAN tag protocols, outermost first: at most two of
	// layers.EthernetTypeDot1Q and layers.EthernetTypeQinQ.
	Tags []layers.EthernetType
	// L3Len is the length of the IPv4 packet after the Ethernet header and
	// the tags.
	L3Len int
}

// Build returns the frame's bytes: Ethernet, the tags, an IPv4 header whose
// total length is L3Len, and a payload whose bytes depend on their offset,
// so that a copy from the wrong place cannot go unnoticed.
func (f Frame) Build() []byte {
	if f.L3Len < 20 {
		panic("bpftest: L3Len below an IPv4 header")
	}
	eth := &layers.Ethernet{
		SrcMAC:       []byte{0x02, 0, 0, 0, 0, 1},
		DstMAC:       []byte{0x02, 0, 0, 0, 0, 2},
		EthernetType: layers.EthernetTypeIPv4,
	}
	stack := []gopacket.SerializableLayer{eth}
	next := &eth.EthernetType
	for i, proto := range f.Tags {
		*next = proto
		tag := &layers.Dot1Q{VLANIdentifier: uint16(100 + i), Type: layers.EthernetTypeIPv4}
		stack = append(stack, tag)
		next = &tag.Type
	}
	payload := make([]byte, f.L3Len-20)
	for i := range payload {
		payload[i] = byte(i % 251)
	}
	stack = append(stack,
		&layers.IPv4{
			Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: []byte{198, 18, 0, 1}, DstIP: []byte{198, 18, 0, 2},
		},
		gopacket.Payload(payload))
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, stack...); err != nil {
		panic(err)
	}
	return buf.Bytes()
}
