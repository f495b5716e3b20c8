// Package bpftest holds what ringcap's tests share: the gates for tests
// that need root or a tool, the -update flag for golden files, and
// Ethernet frames of exact lengths.
package bpftest

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"

	"github.com/cilium/ebpf"
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

// Update is -update: tests rewrite their golden files instead of comparing
// with them. It is defined here, in the package every test package
// imports, so that `go test ./... -update` is understood by all of them.
var Update = flag.Bool("update", false, "rewrite golden files")

// RequireTool skips t when the command is not installed, or fails it when
// RINGCAP_REQUIRE_PRIV=1 (CI, where .ci/run installs it).
func RequireTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return
	}
	if os.Getenv("RINGCAP_REQUIRE_PRIV") == "1" {
		t.Fatalf("%s is not installed (.ci/run installs it)", name)
	}
	t.Skipf("%s is not installed", name)
}

// Frame describes a test frame.
type Frame struct {
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
func (f Frame) Build() []byte {
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
			panic("bpftest: L3Len below the L3 header")
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

// xdpPass is XDP_PASS, what ringcap's program returns for every frame.
const xdpPass = 2

// RunTimes feeds frame to the XDP program prog times times through
// BPF_PROG_TEST_RUN and checks that every run passed the frame on.
//
// Each run is a test run of its own, never one with Repeat: a signal (the
// Go runtime sends them) interrupts a repeated run part way, after the
// kernel has already run the program some times, and cilium/ebpf then
// starts the whole run again, so counters and ring records would count
// some frames twice. A single run is never restarted: the kernel checks
// for signals only between repetitions.
func RunTimes(prog *ebpf.Program, frame []byte, times int) error {
	opts := ebpf.RunOptions{Data: frame}
	for range times {
		ret, err := prog.Run(&opts)
		if err != nil {
			return fmt.Errorf("test run: %w", err)
		}
		if ret != xdpPass {
			return fmt.Errorf("program returned %d, want XDP_PASS (%d)", ret, xdpPass)
		}
	}
	return nil
}
