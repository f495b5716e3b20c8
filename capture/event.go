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
	data     []byte // cap_len bytes of the frame; aliases the ring record
}

// decodeEvent reads a ring record without copying the frame bytes.
func decodeEvent(raw []byte) (event, error) {
	if len(raw) < bpf.EventHeaderSize {
		return event{}, fmt.Errorf("ring record of %d bytes is shorter than the %d-byte event header", len(raw), bpf.EventHeaderSize)
	}
	capLen := binary.NativeEndian.Uint32(raw[20:24])
	if int(capLen) > len(raw)-bpf.EventHeaderSize {
		return event{}, fmt.Errorf("ring record claims %d captured bytes but carries %d", capLen, len(raw)-bpf.EventHeaderSize)
	}
	return event{
		tsNs:     binary.NativeEndian.Uint64(raw[0:8]),
		ifindex:  binary.NativeEndian.Uint32(raw[8:12]),
		rxQueue:  binary.NativeEndian.Uint32(raw[12:16]),
		frameLen: binary.NativeEndian.Uint32(raw[16:20]),
		data:     raw[bpf.EventHeaderSize : bpf.EventHeaderSize+int(capLen)],
	}, nil
}
