package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// InputInterface is one interface of a recorded capture.
type InputInterface struct {
	Name     string
	LinkType layers.LinkType
}

// Frame is one recorded frame, as the Ethernet frame the XDP program would
// have seen.
type Frame struct {
	Interface int // position in Input.Interfaces
	Time      time.Time
	Length    int    // original length on the wire
	Data      []byte // captured bytes; valid until the next call to Next
	// Direction is the frame's as recorded: pcapng's epb_flags, a Linux
	// cooked header's packet type; inbound where the file does not say.
	Direction Direction
}

// Input reads the frames of a pcap or pcapng file, mapped to Ethernet.
// A pcapng file may hold several sections (files joined with cat), each
// numbering its interfaces from 0: Input numbers them across the file,
// a section's after the earlier sections', as Wireshark shows them.
type Input struct {
	pcap   *pcapgo.Reader
	ng     *pcapgo.NgReader
	ifaces []InputInterface
	// section is the position in ifaces of the current section's first
	// interface.
	section int
	err     error  // from the end of a section, for Next to return
	buf     []byte // Ethernet frames built from other link types
}

const (
	pcapMagicMicro   = 0xa1b2c3d4
	pcapMagicNano    = 0xa1b23c4d
	pcapngMagic      = 0x0a0d0d0a
	ethernetHdrLen   = 14
	linuxSLLHdrLen   = 16
	linuxSLL2HdrLen  = 20
	etherTypeIPv4    = 0x0800
	etherTypeIPv6    = 0x86dd
	maxInputSnapLen  = 256 << 10 // larger records are not frames but damage
	supportedLinkTxt = "Ethernet, raw IP, Linux cooked (SLL, SLL2)"
)

// NewInput reads the file header from r, which holds pcap or pcapng.
func NewInput(r io.Reader) (*Input, error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("not a pcap or pcapng file: %w", shortRead(err))
	}
	in := &Input{}
	switch magic := binary.LittleEndian.Uint32(head); {
	case magic == pcapngMagic:
		// Interfaces may differ in link type; without WantMixedLinkType
		// NgReader skips the frames of all but the first one's.
		opts := pcapgo.NgReaderOptions{WantMixedLinkType: true, SectionEndCallback: in.endSection}
		if in.ng, err = pcapgo.NewNgReader(br, opts); err != nil {
			return nil, fmt.Errorf("broken pcapng file: %w", shortRead(err))
		}
	case magic == pcapMagicMicro, magic == pcapMagicNano,
		binary.BigEndian.Uint32(head) == pcapMagicMicro, binary.BigEndian.Uint32(head) == pcapMagicNano:
		if in.pcap, err = pcapgo.NewReader(br); err != nil {
			return nil, fmt.Errorf("broken pcap file: %w", shortRead(err))
		}
		in.pcap.SetSnaplen(maxInputSnapLen)
		in.ifaces = []InputInterface{{LinkType: in.pcap.LinkType()}}
		if err := checkLinkType(in.pcap.LinkType()); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("not a pcap or pcapng file (it starts with %x)", head)
	}
	return in, nil
}

func shortRead(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("file ends too early")
	}
	return err
}

func checkLinkType(lt layers.LinkType) error {
	switch lt {
	case layers.LinkTypeEthernet, layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6,
		layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2:
		return nil
	}
	return fmt.Errorf("link type %s (%d) cannot be replayed: the XDP program sees Ethernet frames, and ringcap maps only %s to them",
		lt, int(lt), supportedLinkTxt)
}

// Interfaces returns the interfaces read so far, in the file's order.
func (in *Input) Interfaces() []InputInterface { return in.ifaces }

// Next returns the next frame, or io.EOF after the last one. A frame too
// short for its link-layer header comes back with no Data.
func (in *Input) Next() (Frame, error) {
	var (
		data []byte
		ci   gopacket.CaptureInfo
		opts pcapgo.NgPacketOptions
		err  error
	)
	if in.ng != nil {
		data, ci, opts, err = in.ng.ZeroCopyReadPacketDataWithOptions()
	} else {
		data, ci, err = in.pcap.ZeroCopyReadPacketData()
	}
	if in.err != nil {
		return Frame{}, in.err
	}
	if errors.Is(err, io.EOF) {
		return Frame{}, io.EOF
	}
	if err != nil {
		return Frame{}, fmt.Errorf("broken file: %w", shortRead(err))
	}
	if len(data) > maxInputSnapLen || ci.Length < len(data) {
		return Frame{}, fmt.Errorf("broken file: a record claims %d captured bytes of a %d-byte frame", len(data), ci.Length)
	}
	iface := ci.InterfaceIndex
	if in.ng != nil {
		iface += in.section
		if err := in.learnInterfaces(iface+1, in.ng.Interface); err != nil {
			return Frame{}, err
		}
	}
	f := Frame{Interface: iface, Time: ci.Timestamp, Length: ci.Length, Data: data}
	if opts.Flags != nil && opts.Flags.Direction == pcapgo.NgEpbFlagDirectionOutbound {
		f.Direction = Outbound
	}
	return in.toEthernet(f, in.ifaces[iface].LinkType), nil
}

// learnInterfaces records the pcapng interfaces up to n in all, the
// current section's from get; NgReader reads their descriptions as it
// meets them.
func (in *Input) learnInterfaces(n int, get func(int) (pcapgo.NgInterface, error)) error {
	for len(in.ifaces) < n {
		ifc, err := get(len(in.ifaces) - in.section)
		if err != nil {
			return fmt.Errorf("broken file: %w", err)
		}
		if err := checkLinkType(ifc.LinkType); err != nil {
			return fmt.Errorf("interface %d (%s): %w", len(in.ifaces), ifc.Name, err)
		}
		in.ifaces = append(in.ifaces, InputInterface{Name: ifc.Name, LinkType: ifc.LinkType})
	}
	return nil
}

// endSection is NgReader's callback when a new section begins: the
// section that ended keeps all its interfaces, frames or not, and the
// next one's come after them.
func (in *Input) endSection(ifaces []pcapgo.NgInterface, _ pcapgo.NgSectionInfo) {
	if in.err != nil {
		return
	}
	in.err = in.learnInterfaces(in.section+len(ifaces), func(i int) (pcapgo.NgInterface, error) {
		return ifaces[i], nil
	})
	in.section = len(in.ifaces)
}

// toEthernet rewrites a frame of another link type as the Ethernet frame
// that would carry the same packet: made-up addresses, the packet's
// EtherType.
func (in *Input) toEthernet(f Frame, lt layers.LinkType) Frame {
	var hdrLen int
	var proto uint16
	switch lt {
	case layers.LinkTypeEthernet:
		return f
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6:
		if len(f.Data) == 0 {
			break
		}
		proto = etherTypeIPv4
		if f.Data[0]>>4 == 6 {
			proto = etherTypeIPv6
		}
	case layers.LinkTypeLinuxSLL:
		hdrLen = linuxSLLHdrLen
		if len(f.Data) >= hdrLen {
			proto = binary.BigEndian.Uint16(f.Data[14:16])
			f.Direction = sllDirection(binary.BigEndian.Uint16(f.Data[0:2]))
		}
	case layers.LinkTypeLinuxSLL2:
		hdrLen = linuxSLL2HdrLen
		if len(f.Data) >= hdrLen {
			proto = binary.BigEndian.Uint16(f.Data[0:2])
			f.Direction = sllDirection(uint16(f.Data[10]))
		}
	}
	if len(f.Data) < hdrLen || (hdrLen == 0 && len(f.Data) == 0) {
		f.Data = nil
		return f
	}
	payload := f.Data[hdrLen:]
	in.buf = append(in.buf[:0],
		0x02, 0, 0, 0, 0, 0x02, // destination: locally administered
		0x02, 0, 0, 0, 0, 0x01, // source
		byte(proto>>8), byte(proto))
	in.buf = append(in.buf, payload...)
	f.Data = in.buf
	f.Length = f.Length - hdrLen + ethernetHdrLen
	return f
}

// sllDirection reads a Linux cooked header's packet type: PACKET_OUTGOING
// (4) is a frame the host sent.
func sllDirection(pktType uint16) Direction {
	if pktType == 4 {
		return Outbound
	}
	return Inbound
}

// OpenInput opens a pcap or pcapng file for Next.
func OpenInput(path string) (*Input, io.Closer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	in, err := NewInput(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return in, f, nil
}
