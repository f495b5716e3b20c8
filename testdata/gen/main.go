// Command gen writes ringcap's replay corpus: small deterministic captures
// covering what the selection has to get right, and broken files for the
// input reader. Run it with `go generate ./testdata`; it rewrites every
// file it owns, byte for byte the same on every machine.
package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/ringcap/ringcap/bpf/frames"
)

var (
	dot1q = layers.EthernetTypeDot1Q
	qinq  = layers.EthernetTypeQinQ
	ipv6  = layers.EthernetTypeIPv6
	arp   = layers.EthernetTypeARP
	// A local experimental EtherType: not IP, still an L3 length.
	other = layers.EthernetType(0x88b5)
	t0    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

// frame is one frame of a capture: which interface, and its bytes.
type frame struct {
	iface int
	data  []byte
	snap  int // bytes recorded; 0 records the whole frame
}

func f(iface int, desc frames.Spec) frame { return frame{iface: iface, data: desc.Build()} }

// around returns frames of L3 length mtu-1, mtu and mtu+1.
func around(iface, mtu int, tags []layers.EthernetType, l3 layers.EthernetType) []frame {
	var out []frame
	for _, n := range []int{mtu - 1, mtu, mtu + 1} {
		out = append(out, f(iface, frames.Spec{Tags: tags, EtherType: l3, L3Len: n}))
	}
	return out
}

func concat(parts ...[]frame) []frame {
	var out []frame
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "interfaces" {
		manyInterfaces(os.Args[2:])
		return
	}
	dir := "."
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	for name, b := range captures() {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			fail(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			fail(err)
		}
	}
}

// captures are the files the generator writes, by path.
func captures() map[string][]byte {
	jumbo := jumboFrames()
	files := map[string][]byte{
		"threshold.pcapng":       pcapng(thresholdFrames(), eth("eth0")),
		"jumbo.pcapng":           pcapng(jumbo, eth("eth0")),
		"multi-interface.pcapng": pcapng(multiInterfaceFrames(), eth("eth0", "eth1", "eth2")),
		// An Ethernet interface beside a tunnel that records raw IP.
		"mixed-linktypes.pcapng": pcapng(concat(around(0, 1500, nil, 0), stripEthernet(around(1, 1500, nil, ipv6))),
			[]iface{{"eth0", layers.LinkTypeEthernet}, {"tun0", layers.LinkTypeRaw}}),
		"classic.pcap":            pcap(layers.LinkTypeEthernet, concat(around(0, 1500, nil, 0), jumbo[3:5])),
		"snaplen-128.pcap":        pcap(layers.LinkTypeEthernet, snappedFrames()),
		"short-frame.pcap":        pcap(layers.LinkTypeEthernet, shortFrames()),
		"raw-ip.pcap":             pcap(layers.LinkTypeRaw, stripEthernet(concat(around(0, 1500, nil, 0), around(0, 1500, nil, ipv6)))),
		"linux-sll.pcap":          pcap(layers.LinkTypeLinuxSLL, toSLL(concat(around(0, 1500, nil, 0), around(0, 1500, nil, ipv6)))),
		"unsupported-802.11.pcap": pcap(layers.LinkTypeIEEE802_11, []frame{{data: make([]byte, 40)}}),
		// What filter expressions are tried on, against tcpdump.
		"protocols.pcap": pcap(layers.LinkTypeEthernet, protocols()),
		// Frames of the lengths whole-frame records must get right:
		// the shortest, about the snap lengths tried, a full standard
		// frame and a jumbo one.
		"sizes.pcap": pcap(layers.LinkTypeEthernet, sized(60, 61, 255, 256, 257, 1514, 9014)),
	}
	// Two files joined with cat: one pcapng file of two sections, whose
	// interface numbers each start again at 0.
	files["multi-section.pcapng"] = slices.Concat(files["mixed-linktypes.pcapng"], files["multi-interface.pcapng"])
	good := files["threshold.pcapng"]
	files["broken/truncated.pcapng"] = good[:len(good)-700]
	files["broken/bad-magic.pcap"] = append([]byte{0xde, 0xad, 0xbe, 0xef}, files["classic.pcap"][4:]...)
	files["broken/empty.pcap"] = nil
	files["broken/block-length-lies.pcapng"] = blockLengthLies(good)
	files["broken/caplen-lies.pcap"] = caplenLies(files["classic.pcap"])
	return files
}

// thresholdFrames are frames about an MTU of 1500 (and 1000), with and
// without VLAN tags, of each EtherType the program tells apart.
func thresholdFrames() []frame {
	return concat(
		around(0, 1500, nil, 0),
		around(0, 1500, []layers.EthernetType{dot1q}, 0),
		around(0, 1500, []layers.EthernetType{qinq, dot1q}, 0),
		around(0, 1500, nil, ipv6),
		around(0, 1500, []layers.EthernetType{dot1q}, ipv6),
		around(0, 1500, nil, other),
		[]frame{f(0, frames.Spec{EtherType: arp}), f(0, frames.Spec{Tags: []layers.EthernetType{dot1q}, EtherType: arp})},
		around(0, 1000, nil, 0),
	)
}

func jumboFrames() []frame {
	return []frame{
		f(0, frames.Spec{L3Len: 1501}),
		f(0, frames.Spec{L3Len: 4000}),
		f(0, frames.Spec{L3Len: 8999}),
		f(0, frames.Spec{L3Len: 9000}),
		f(0, frames.Spec{Tags: []layers.EthernetType{qinq, dot1q}, L3Len: 9000}),
		f(0, frames.Spec{EtherType: ipv6, L3Len: 9000}),
		f(0, frames.Spec{L3Len: 64}),
	}
}

func multiInterfaceFrames() []frame {
	return []frame{
		f(0, frames.Spec{L3Len: 1400}),
		f(1, frames.Spec{L3Len: 1600}),
		f(2, frames.Spec{Tags: []layers.EthernetType{dot1q}, L3Len: 1501}),
		f(1, frames.Spec{L3Len: 200}),
		f(0, frames.Spec{L3Len: 9000}),
		f(2, frames.Spec{EtherType: ipv6, L3Len: 1500}),
		f(2, frames.Spec{EtherType: ipv6, L3Len: 2000}),
	}
}

// snappedFrames were recorded with a snap length of 128: the replay has
// to select on the original length, not the bytes that were kept.
func snappedFrames() []frame {
	return []frame{
		{data: frames.Spec{L3Len: 1500}.Build(), snap: 128},
		{data: frames.Spec{L3Len: 1501}.Build(), snap: 128},
		{data: frames.Spec{L3Len: 9000}.Build(), snap: 128},
	}
}

func shortFrames() []frame {
	return []frame{
		f(0, frames.Spec{L3Len: 1501}),
		{data: frames.Spec{L3Len: 100}.Build()[:10]}, // shorter than an Ethernet header
		f(0, frames.Spec{L3Len: 1600}),
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gen:", err)
	os.Exit(1)
}

func captureInfo(i int, fr frame) gopacket.CaptureInfo {
	data := fr.data
	if fr.snap > 0 && fr.snap < len(data) {
		data = data[:fr.snap]
	}
	return gopacket.CaptureInfo{
		Timestamp:      t0.Add(time.Duration(i) * 1001 * time.Microsecond),
		CaptureLength:  len(data),
		Length:         len(fr.data),
		InterfaceIndex: fr.iface,
	}
}

// iface is a pcapng interface: its name and link type.
type iface struct {
	name string
	lt   layers.LinkType
}

func eth(names ...string) []iface {
	var out []iface
	for _, n := range names {
		out = append(out, iface{n, layers.LinkTypeEthernet})
	}
	return out
}

func pcapng(frames []frame, ifaces []iface) []byte {
	var buf bytes.Buffer
	// No hardware or OS in the section header: the files must not
	// depend on the machine that made them.
	opts := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "ringcap testdata generator"}}
	intf := func(i iface) pcapgo.NgInterface {
		return pcapgo.NgInterface{Name: i.name, LinkType: i.lt, SnapLength: 65535, TimestampResolution: 9}
	}
	w, err := pcapgo.NewNgWriterInterface(&buf, intf(ifaces[0]), opts)
	if err != nil {
		fail(err)
	}
	for _, i := range ifaces[1:] {
		if _, err := w.AddInterface(intf(i)); err != nil {
			fail(err)
		}
	}
	for i, fr := range frames {
		ci := captureInfo(i, fr)
		if err := w.WritePacket(ci, fr.data[:ci.CaptureLength]); err != nil {
			fail(err)
		}
	}
	if err := w.Flush(); err != nil {
		fail(err)
	}
	return buf.Bytes()
}

func pcap(lt layers.LinkType, frames []frame) []byte {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, lt); err != nil {
		fail(err)
	}
	for i, fr := range frames {
		ci := captureInfo(i, fr)
		if err := w.WritePacket(ci, fr.data[:ci.CaptureLength]); err != nil {
			fail(err)
		}
	}
	return buf.Bytes()
}

// stripEthernet turns Ethernet frames into raw IP packets.
func stripEthernet(frames []frame) []frame {
	for i := range frames {
		frames[i].data = frames[i].data[14:]
	}
	return frames
}

// toSLL turns Ethernet frames into Linux cooked (SLL) ones: packet type
// "to us", ARPHRD_ETHER, the source address and the protocol.
func toSLL(frames []frame) []frame {
	for i, fr := range frames {
		hdr := make([]byte, 16)
		binary.BigEndian.PutUint16(hdr[2:], 1) // ARPHRD_ETHER
		binary.BigEndian.PutUint16(hdr[4:], 6)
		copy(hdr[6:], fr.data[6:12])
		copy(hdr[14:], fr.data[12:14])
		frames[i].data = append(hdr, fr.data[14:]...)
	}
	return frames
}

// blockLengthLies makes the second block's length field claim far more
// than the file holds, and an odd value.
func blockLengthLies(good []byte) []byte {
	b := bytes.Clone(good)
	first := binary.LittleEndian.Uint32(b[4:])
	binary.LittleEndian.PutUint32(b[first+4:], 0x7ffffff1)
	return b
}

// caplenLies makes the first record of a pcap file claim more captured
// bytes than the file holds.
func caplenLies(good []byte) []byte {
	b := bytes.Clone(good)
	binary.LittleEndian.PutUint32(b[24+8:], 200000)
	binary.LittleEndian.PutUint32(b[24+12:], 200000)
	return b
}

// sized returns one frame of each length, IPv4 to the test's addresses.
func sized(lengths ...int) []frame {
	var out []frame
	for _, n := range lengths {
		out = append(out, f(0, frames.Spec{L3Len: n - 14}))
	}
	return out
}
