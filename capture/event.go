package capture

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/capture/packet"
)

// event is one ring record as struct event in bpf/ringcap.c lays it out,
// followed by the frame's first bytes.
type event struct {
	tsNs     uint64
	slot     uint32 // the hook's, in the capture's order
	rxQueue  uint32
	frameLen uint32
	drops    uint64 // the interface's losses on cpu so far
	cpu      uint32
	data     []byte // cap_len bytes of the frame, within the record
}

// decodeEvent reads a ring record. The frame bytes stay where they are,
// in the ring.
func decodeEvent(raw []byte) (event, error) {
	if len(raw) < bpf.EventHeaderSize {
		return event{}, fmt.Errorf("ring record of %d bytes is shorter than the %d-byte event header", len(raw), bpf.EventHeaderSize)
	}
	capLen := binary.NativeEndian.Uint32(raw[bpf.EventCapLenOffset:])
	if int(capLen) > len(raw)-bpf.EventHeaderSize {
		return event{}, fmt.Errorf("ring record claims %d captured bytes but carries %d", capLen, len(raw)-bpf.EventHeaderSize)
	}
	return event{
		tsNs:     binary.NativeEndian.Uint64(raw[bpf.EventTsOffset:]),
		slot:     binary.NativeEndian.Uint32(raw[bpf.EventSlotOffset:]),
		rxQueue:  binary.NativeEndian.Uint32(raw[bpf.EventRxQueueOffset:]),
		frameLen: binary.NativeEndian.Uint32(raw[bpf.EventFrameLenOffset:]),
		drops:    binary.NativeEndian.Uint64(raw[bpf.EventDropsOffset:]),
		cpu:      binary.NativeEndian.Uint32(raw[bpf.EventCPUOffset:]),
		data:     raw[bpf.EventHeaderSize : bpf.EventHeaderSize+int(capLen)],
	}, nil
}

// packet is the packet the sink gets for record ev: the frame of the
// sink's interface iface, travelling in dir, seen at time at, with
// dropCount frames of its slot lost since the one before. It is the one
// conversion of a live capture and of a replay, whose frames no receive
// queue received: a replay clears Queue.
func (ev *event) packet(iface int, dir Direction, at time.Time, dropCount uint64) packet.Packet {
	return packet.Packet{Interface: iface, Time: at, Length: int(ev.frameLen), Outbound: dir == Outbound,
		Queue: ev.rxQueue, DropCount: dropCount, Data: ev.data}
}

// dropCounter turns the program's running loss counts, one per slot and
// CPU, into each frame's losses since the frame before it: the
// program counts per CPU, and the reader hands a CPU's records out in
// the order it wrote them.
type dropCounter struct {
	last [][]uint64 // [interface][cpu]
}

func newDropCounter(interfaces int) (*dropCounter, error) {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count CPUs: %w", err)
	}
	d := &dropCounter{last: make([][]uint64, interfaces)}
	for i := range d.last {
		d.last[i] = make([]uint64, cpus)
	}
	return d, nil
}

// since returns the frames of interface iface lost since the frame
// before ev.
func (d *dropCounter) since(iface int, ev *event) uint64 {
	last := d.last[iface]
	if int(ev.cpu) >= len(last) {
		return 0 // not a CPU the kernel has: a damaged record
	}
	// The rings' merge hands a CPU's records out in the order it wrote
	// them, but for a record that came to a quiet ring later than the
	// reader waits for one (docs/design.md, "Rings"): its count is behind.
	if ev.drops < last[ev.cpu] {
		return 0
	}
	n := ev.drops - last[ev.cpu]
	last[ev.cpu] = ev.drops
	return n
}
