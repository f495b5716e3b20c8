package bpf

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf"
)

// skbContext is the start of struct __sk_buff, as a tc test run takes its
// context: the kernel refuses any field it does not let a test set, so all
// but cb stay zero. bpf2go cannot generate the whole struct (it holds
// pointers); TestReplayContextLayout checks cb's offset against the
// object's BTF.
type skbContext struct {
	_  [12]uint32 // len to tc_index
	Cb [5]uint32
}

// xdpMetaLen is the XDP metadata a replay's test run carries before the
// frame: the slot plus one, as replay_slot in ringcap.c reads it.
const xdpMetaLen = 4

// ReplayRunner runs a replay's instances (Instance.Replay) over recorded
// frames, naming each frame's slot in the test run's context: a recorded
// interface is no device of this host, so no interface index can name it.
// It keeps a buffer from one run to the next; it is not safe for
// concurrent use.
type ReplayRunner struct {
	data []byte
}

// Run runs prog once over frame as a frame of slot's hook, and returns
// the program's verdict.
func (r *ReplayRunner) Run(prog *ebpf.Program, slot int, frame []byte) (uint32, error) {
	if slot < 0 {
		return 0, fmt.Errorf("slot %d", slot)
	}
	key := uint32(slot) + 1
	opts := ebpf.RunOptions{Data: frame}
	if prog.Type() == ebpf.SchedCLS {
		var ctx skbContext
		ctx.Cb[0] = key
		opts.Context = ctx
	} else {
		r.data = binary.NativeEndian.AppendUint32(r.data[:0], key)
		r.data = append(r.data, frame...)
		opts.Data = r.data
		opts.Context = ringcapXdpMd{Data: xdpMetaLen, DataEnd: uint32(len(r.data))}
	}
	return prog.Run(&opts)
}
