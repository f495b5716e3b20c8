// Package writer turns captured frames into pcapng files, one or a rotated
// series of them.
package writer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/ringcap/ringcap/capture/packet"
)

// Interface describes one capture interface in the file's Interface
// Description Block.
type Interface struct {
	Name        string // if_name
	Description string // if_description, e.g. the XDP mode
	Filter      string // if_filter: what was selected
	SnapLen     uint32
	// Queues says the packets' Queue is the receive queue they came in
	// on, written as epb_queue: true for a live capture, not for a
	// replay, where no queue received them.
	Queues bool
	// OS is the operating system of the machine the interface is on
	// (if_os); empty where that is not known, as in a replay.
	OS string
}

// Options describe a file's header blocks.
type Options struct {
	// The Section Header Block describes the capture as dumpcap's does:
	// the program and its version (shb_userappl), the CPU model
	// (shb_hardware) and the operating system (shb_os). Empty ones are
	// left out.
	Application string
	Hardware    string
	OS          string
	Interfaces  []Interface
	// BufferSize is how many bytes of complete blocks collect before
	// they are written out through the page cache; 0 means
	// DefaultBufferSize. Direct writes (Files, where the file system
	// takes them) fill buffers of DirectBufferSize instead.
	BufferSize int
}

// Stats are one interface's counts over a file's interval, written into
// its Interface Statistics Block.
type Stats struct {
	Start, End time.Time
	Received   uint64 // isb_ifrecv: frames the interface received
	Dropped    uint64 // isb_ifdrop: selected frames lost before the writer
}

// DefaultBufferSize is Options.BufferSize unless set. Into a file on
// ext4 (BenchmarkWriteFile, whose TMPDIR is ext4 on the CI machines), a
// packet cost 250-270 ns with 64 KiB buffers and 175-190 ns with 1 MiB:
// fewer, larger writes take larger page-cache folios. Buffered blocks
// wait at most a second either way (capture.Run flushes that often).
const DefaultBufferSize = 1 << 20

// Writer writes one pcapng section: a Section Header Block, one Interface
// Description Block per interface, an Enhanced Packet Block per frame, and
// at the end an Interface Statistics Block per interface. It encodes the
// blocks into a buffer its blockSink lends it, and hands the buffer back to
// be written out.
//
// pcapgo's NgWriter buffers internally and flushes whenever its buffer is
// full, mid-block. Writer flushes it after every block into its own
// buffer, so that it only ever hands whole blocks to the file: a capture
// that stops on a write error, or is killed, leaves a file that ends on a
// block boundary.
type Writer struct {
	ng     *pcapgo.NgWriter
	ifaces []Interface
	sink   blockSink

	buf   []byte // complete blocks not yet handed to the sink
	full  int    // len(buf) from which it is handed over
	fixed bool   // buf is the sink's memory: it may not grow past its capacity

	produced int64  // bytes in the file once buf is written out
	packets  uint64 // packets written, buffered ones included
	err      error  // sticky: a failed write ends the file
	finished bool   // the sink is closed
}

// New writes the file's header blocks to out.
func New(out io.Writer, opts Options) (*Writer, error) {
	return newWriter(newCachedSink(out, opts.BufferSize, nil, nil), opts)
}

// newWriter writes the file's header blocks into sink. When that fails,
// the sink is closed.
func newWriter(sink blockSink, opts Options) (*Writer, error) {
	w := &Writer{ifaces: opts.Interfaces, sink: sink}
	w.buf, w.full, w.fixed = sink.start()
	if len(opts.Interfaces) == 0 {
		return nil, w.abandon(errors.New("pcapng: no interface"))
	}
	section := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Hardware:    opts.Hardware,
		OS:          opts.OS,
		Application: opts.Application,
	}}
	ifaces := make([]pcapgo.NgInterface, len(opts.Interfaces))
	for i, ifc := range opts.Interfaces {
		ifaces[i] = ifc.block()
	}
	var err error
	if w.ng, err = pcapgo.NewNgWriterInterface(ngOutput{w}, ifaces[0], section); err != nil {
		return nil, w.abandon(fmt.Errorf("pcapng: header: %w", err))
	}
	if err := w.endBlock(); err != nil {
		return nil, w.abandon(err)
	}
	// Block by block: the interfaces of a large capture's file (a replay
	// of thousands) take more than a direct buffer's slack.
	for _, ifc := range ifaces[1:] {
		if _, err := w.ng.AddInterface(ifc); err != nil {
			return nil, w.abandon(fmt.Errorf("pcapng: interface %s: %w", ifc.Name, err))
		}
		if err := w.endBlock(); err != nil {
			return nil, w.abandon(err)
		}
	}
	return w, nil
}

// abandon closes the sink of a Writer that failed to start, writing
// nothing more.
func (w *Writer) abandon(err error) error {
	w.finished = true
	w.sink.close(w.buf[:0], 0)
	return err
}

// block is the interface's Interface Description Block.
func (ifc Interface) block() pcapgo.NgInterface {
	return pcapgo.NgInterface{
		Name:        ifc.Name,
		Description: ifc.Description,
		Filter:      ifc.Filter,
		OS:          ifc.OS,
		LinkType:    layers.LinkTypeEthernet,
		SnapLength:  ifc.SnapLen,
		// pcapgo always writes if_tsresol 9: nanoseconds.
		TimestampResolution: 9,
	}
}

// AddInterface appends an Interface Description Block for ifc, which
// packets then name by its position, after the others: pcapng takes one
// anywhere in a section.
func (w *Writer) AddInterface(ifc Interface) error {
	if w.err != nil {
		return w.err
	}
	if _, err := w.ng.AddInterface(ifc.block()); err != nil {
		return fmt.Errorf("pcapng: interface %s: %w", ifc.Name, err)
	}
	w.ifaces = append(slices.Clip(w.ifaces), ifc)
	return w.endBlock()
}

// ngOutput is the Writer as NgWriter's destination: it collects the bytes
// of a block in the Writer's buffer until endBlock.
type ngOutput struct{ w *Writer }

func (o ngOutput) Write(p []byte) (int, error) {
	w := o.w
	if w.fixed && len(w.buf)+len(p) > cap(w.buf) {
		// Growing would leave the sink's memory.
		return 0, fmt.Errorf("a header block of over %d bytes", cap(w.buf)-w.full)
	}
	w.buf = append(w.buf, p...)
	w.produced += int64(len(p))
	return len(p), nil
}

// endBlock moves the block NgWriter just wrote into w.buf, and hands
// w.buf over once it is full.
func (w *Writer) endBlock() error {
	if err := w.ng.Flush(); err != nil {
		return fmt.Errorf("pcapng: %w", err)
	}
	if len(w.buf) >= w.full {
		return w.spill()
	}
	return nil
}

// spill hands a full buffer to the sink, and goes on in the one it
// returns.
func (w *Writer) spill() error {
	next, padding, err := w.sink.spill(w.buf, w.packets)
	w.produced += int64(padding)
	if err != nil {
		w.err = err
		return err
	}
	w.buf = next
	return nil
}

// WritePacket appends one Enhanced Packet Block: the frame's first bytes,
// its original length, its time, the inbound direction flag and, where the
// interface has them, its receive queue.
func (w *Writer) WritePacket(p packet.Packet) error {
	if w.err != nil {
		return w.err
	}
	if p.Interface < 0 || p.Interface >= len(w.ifaces) {
		return fmt.Errorf("pcapng: packet on interface %d of %d", p.Interface, len(w.ifaces))
	}
	if len(p.Data) > p.Length {
		return fmt.Errorf("pcapng: %d captured bytes of a %d-byte frame", len(p.Data), p.Length)
	}
	w.appendEPB(&p, w.ifaces[p.Interface].Queues)
	w.packets++
	if len(w.buf) >= w.full {
		return w.spill()
	}
	return nil
}

var zeros [4]byte

// Enhanced Packet Block options, each a 2-byte code, a 2-byte length and
// its value.
const (
	epbFlags     = 2 // epb_flags (4 bytes): direction and reception type
	epbDropCount = 4 // epb_dropcount (8 bytes): frames lost before this one
	epbQueue     = 6 // epb_queue (4 bytes): the receive queue
	// epb_flags' directions, in its bits 0-1.
	epbFlagInbound  = 1
	epbFlagOutbound = 2
)

// appendEPB appends an Enhanced Packet Block to w.buf. It is written by
// hand, not with pcapgo's WritePacketWithOptions, because that builds the
// options anew for every packet (two allocations a packet), and this is
// the per-packet path; pcapgo's reader has no epb_queue either. The layout
// is the same: little endian, nanosecond timestamps (the interfaces'
// if_tsresol is 9).
func (w *Writer) appendEPB(p *packet.Packet, queue bool) {
	pad := (4 - len(p.Data)&3) & 3
	options := 8 + 12 + 4 // epb_flags, epb_dropcount, opt_endofopt
	if queue {
		options += 8
	}
	total := 28 + len(p.Data) + pad + options + 4
	nanos := uint64(p.Time.UnixNano())
	b := w.buf
	b = binary.LittleEndian.AppendUint32(b, ngBlockTypeEPB)
	b = binary.LittleEndian.AppendUint32(b, uint32(total))
	b = binary.LittleEndian.AppendUint32(b, uint32(p.Interface))
	b = binary.LittleEndian.AppendUint32(b, uint32(nanos>>32))
	b = binary.LittleEndian.AppendUint32(b, uint32(nanos))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(p.Data)))
	b = binary.LittleEndian.AppendUint32(b, uint32(p.Length))
	b = append(b, p.Data...)
	b = append(b, zeros[:pad]...)
	flags := uint32(epbFlagInbound)
	if p.Outbound {
		flags = epbFlagOutbound
	}
	b = appendOption32(b, epbFlags, flags)
	b = binary.LittleEndian.AppendUint16(b, epbDropCount)
	b = binary.LittleEndian.AppendUint16(b, 8)
	b = binary.LittleEndian.AppendUint64(b, p.DropCount)
	if queue {
		b = appendOption32(b, epbQueue, p.Queue)
	}
	b = append(b, zeros[:4]...) // opt_endofopt
	b = binary.LittleEndian.AppendUint32(b, uint32(total))
	w.buf = b
	w.produced += int64(total)
}

// appendOption32 appends a pcapng option with a 4-byte value.
func appendOption32(b []byte, code uint16, v uint32) []byte {
	b = binary.LittleEndian.AppendUint16(b, code)
	b = binary.LittleEndian.AppendUint16(b, 4)
	return binary.LittleEndian.AppendUint32(b, v)
}

// WriteStats appends an Interface Statistics Block for each interface, in
// the order of Options.Interfaces.
func (w *Writer) WriteStats(stats []Stats) error {
	if w.err != nil {
		return w.err
	}
	for i, s := range stats {
		err := w.ng.WriteInterfaceStats(i, pcapgo.NgInterfaceStatistics{
			LastUpdate:      s.End,
			StartTime:       s.Start,
			EndTime:         s.End,
			PacketsReceived: s.Received,
			PacketsDropped:  s.Dropped,
		})
		if err != nil {
			return fmt.Errorf("pcapng: statistics: %w", err)
		}
		if err := w.endBlock(); err != nil {
			return err
		}
	}
	return nil
}

// Flush writes the complete blocks collected so far out. When the write
// fails part way, a file is cut back to the end of the last block that
// reached it whole, and the Writer takes no more. Writing directly, the
// write is only queued, and a failure shows in a later call.
func (w *Writer) Flush() error {
	if w.err != nil || w.finished {
		return w.err
	}
	w.buf, w.err = w.sink.flush(w.buf, w.packets)
	return w.err
}

// ngBlockTypeEPB is the Enhanced Packet Block's type.
const ngBlockTypeEPB = 6

// wholeBlocks returns the length of the complete pcapng blocks at the
// start of b, and how many of them are packets. Blocks start with their
// type and length, so they can be walked.
func wholeBlocks(b []byte) (length int, packets uint64) {
	for len(b)-length >= 12 {
		// NgWriter writes little endian.
		typ := binary.LittleEndian.Uint32(b[length:])
		n := int(binary.LittleEndian.Uint32(b[length+4:]))
		if n < 12 || length+n > len(b) {
			break
		}
		length += n
		if typ == ngBlockTypeEPB {
			packets++
		}
	}
	return length, packets
}

// wait is Flush that returns once the file holds what was written.
func (w *Writer) wait() error {
	if err := w.Flush(); err != nil || w.finished {
		return err
	}
	w.err = w.sink.wait()
	return w.err
}

// finish is Flush for the last time: it waits for the writes and ends
// them, so that Saved and the error are final.
func (w *Writer) finish() error {
	if w.finished {
		return w.err
	}
	w.finished = true
	err := w.sink.close(w.buf, w.packets)
	w.buf = nil
	if w.err == nil {
		w.err = err
	}
	return w.err
}

// Size is the file's size once everything written so far is flushed.
func (w *Writer) Size() int64 { return w.produced }

// Packets is the number of packets written, buffered ones included.
func (w *Writer) Packets() uint64 { return w.packets }

// Saved is the number of packets that reached the file: all of them after
// a successful Flush, the whole ones before the failure after a failed one.
func (w *Writer) Saved() uint64 { return w.sink.saved() }
