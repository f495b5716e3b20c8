package capture

import (
	"encoding/binary"
	"fmt"

	"github.com/ringcap/ringcap/bpf"
)

// event is one ring record as struct event in bpf/ringcap.c lays it out,
// followed by the frame's first bytes.
type event struct {
	tsNs     uint64
	ifindex  uint32
	rxQueue  uint32
	frameLen uint32
	data     []byte // cap_len bytes of the frame, within the record
}

// decodeEvent reads a ring record. The frame bytes stay where they are,
// in the reader's copy of the record.
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
		ifindex:  binary.NativeEndian.Uint32(raw[bpf.EventIfindexOffset:]),
		rxQueue:  binary.NativeEndian.Uint32(raw[bpf.EventRxQueueOffset:]),
		frameLen: binary.NativeEndian.Uint32(raw[bpf.EventFrameLenOffset:]),
		data:     raw[bpf.EventHeaderSize : bpf.EventHeaderSize+int(capLen)],
	}, nil
}
