package bpf

import (
	"github.com/cilium/ebpf/asm"
)

// Where a tag put back sits in the recorded frame: after the MAC
// addresses, 4 bytes.
const (
	tagStart = 12
	tagEnd   = tagStart + 4
	// macLen is the MAC header's length, missing from the data where
	// the tc filter's gap argument says so.
	macLen = 14
	// bpfHdrStartMAC is BPF_HDR_START_MAC: bpf_skb_load_bytes_relative
	// reads from the MAC header.
	bpfHdrStartMAC = 0
)

// Byte offsets of the packet pointers in each context.
const (
	xdpData, xdpDataEnd = 0, 4   // struct xdp_md
	skbData, skbDataEnd = 76, 80 // struct __sk_buff
)

// packetPointers are the context's offsets of data and data_end.
func (t target) packetPointers() (data, dataEnd int16) {
	if t.tc {
		return skbData, skbDataEnd
	}
	return xdpData, xdpDataEnd
}

// loadRecorded loads size bytes at offset off of the frame as recorded,
// big endian, into dst: with a tag put back (regVLAN not 0), offsets past
// the MAC addresses are 4 bytes later than in the packet.
func (t *translator) loadRecorded(dst asm.Register, off uint32, size int) {
	if off+uint32(size) <= tagStart {
		t.loadAbsolute(dst, off, size)
		return
	}
	tagged, done := t.newLabel(), t.newLabel()
	t.emit(asm.JNE.Imm32(regVLAN, 0, tagged))
	t.loadAbsolute(dst, off, size)
	t.emit(asm.Ja.Label(done))
	t.mark(tagged)
	switch {
	case off >= tagEnd:
		t.loadAbsolute(dst, off-(tagEnd-tagStart), size)
	case size == 1:
		t.tagByte(dst, off)
	default:
		// Some bytes from the tag, some from the packet.
		t.assemble(dst, off, size, tagBuf, func(p uint32) {
			switch {
			case p < tagStart:
				t.loadAbsolute(dst, p, 1)
			case p < tagEnd:
				t.tagByte(dst, p)
			default:
				t.loadAbsolute(dst, p-(tagEnd-tagStart), 1)
			}
		})
	}
	t.mark(done)
}

// assemble puts together in dst a load of size bytes at the constant
// offset off from single bytes, each put into dst by one, gathered big
// endian in buf on the stack.
func (t *translator) assemble(dst asm.Register, off uint32, size int, buf int16, one func(p uint32)) {
	for i := range uint32(size) {
		one(off + i)
		t.emit(asm.StoreMem(asm.RFP, buf+int16(i), dst, asm.Byte))
	}
	t.emit(asm.LoadMem(dst, asm.RFP, buf, sizeOf(size)))
	t.emit(toHost(dst, size)...)
}

// tagByte puts byte p (within the tag) of the recorded frame into dst.
func (t *translator) tagByte(dst asm.Register, p uint32) {
	t.emit(
		asm.Mov.Reg32(dst, regVLAN),
		asm.RSh.Imm32(dst, int32(8*(tagEnd-1-p))),
		asm.And.Imm32(dst, 0xff),
	)
}

// loadAbsolute loads size bytes at offset off of the frame from its MAC
// header, big endian, into dst: for the tc filter, where the gap argument
// says the data starts after the MAC header, the MAC header's bytes are
// read relative to it and the others 14 bytes earlier in the data.
func (t *translator) loadAbsolute(dst asm.Register, off uint32, size int) {
	if !t.target.tc {
		t.loadData(dst, off, size)
		return
	}
	gapped, done := t.newLabel(), t.newLabel()
	t.emit(asm.LoadMem(asm.R1, asm.RFP, gapSlot, asm.DWord), asm.JNE.Imm(asm.R1, 0, gapped))
	t.loadData(dst, off, size)
	t.emit(asm.Ja.Label(done))
	t.mark(gapped)
	switch {
	case off+uint32(size) <= macLen:
		t.emit(asm.Mov.Imm(asm.R2, int32(off)))
		t.loadMAC(dst, size)
	case off >= macLen:
		t.loadData(dst, off-macLen, size)
	default:
		t.assemble(dst, off, size, gapBuf, func(p uint32) {
			if p < macLen {
				t.emit(asm.Mov.Imm(asm.R2, int32(p)))
				t.loadMAC(dst, 1)
			} else {
				t.loadData(dst, p-macLen, 1)
			}
		})
	}
	t.mark(done)
}

// loadMAC loads size bytes at MAC header offset R2 into dst, big endian,
// with bpf_skb_load_bytes_relative().
func (t *translator) loadMAC(dst asm.Register, size int) {
	t.emit(
		asm.Mov.Reg(asm.R1, regCtx),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, loadBuf),
		asm.Mov.Imm(asm.R4, int32(size)),
		asm.Mov.Imm(asm.R5, bpfHdrStartMAC),
		asm.FnSkbLoadBytesRelative.Call(),
		asm.JNE.Imm(asm.R0, 0, t.exitNoMatch()),
		asm.LoadMem(dst, asm.RFP, loadBuf, sizeOf(size)),
	)
	t.emit(toHost(dst, size)...)
}

// loadData loads size bytes at offset off of the data, big endian, into
// dst: directly from the first buffer where it holds them, else with the
// helper.
func (t *translator) loadData(dst asm.Register, off uint32, size int) {
	// The verifier takes constant packet offsets below 64 KiB.
	if uint64(off)+uint64(size) >= 0xffff {
		t.emit(asm.LoadImm(asm.R2, int64(off), asm.DWord))
		t.loadBytes(dst, size)
		return
	}
	slow, done := t.newLabel(), t.newLabel()
	data, dataEnd := t.target.packetPointers()
	t.emit(
		asm.LoadMem(asm.R2, regCtx, data, asm.Word),
		asm.LoadMem(asm.R3, regCtx, dataEnd, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R2),
		asm.Add.Imm(asm.R1, int32(off)+int32(size)),
		asm.JGT.Reg(asm.R1, asm.R3, slow),
	)
	if off > 0x7fff {
		// Past the instruction's signed 16-bit offset.
		t.emit(asm.Add.Imm(asm.R2, int32(off)), asm.LoadMem(dst, asm.R2, 0, sizeOf(size)))
	} else {
		t.emit(asm.LoadMem(dst, asm.R2, int16(off), sizeOf(size)))
	}
	t.emit(toHost(dst, size)...)
	t.emit(asm.Ja.Label(done))
	t.mark(slow)
	t.emit(asm.LoadImm(asm.R2, int64(off), asm.DWord))
	t.loadBytes(dst, size)
	t.mark(done)
}

// loadIndirect loads size bytes at frame offset X+off into A. The offset
// is computed in 64 bits, so that it never wraps around to the start of
// the frame as a 32-bit sum would.
func (t *translator) loadIndirect(off uint32, size int) {
	t.emit(asm.LoadImm(asm.R2, int64(off), asm.DWord), asm.Add.Reg(asm.R2, regX))
	// With a tag put back, an offset past it is 4 bytes earlier in the
	// packet, one before it is the same, and a load that covers any of
	// the tag's bytes is put together byte by byte: R2 >= 16, past;
	// R2 + size <= 12, the packet's; else it covers some. This remap and
	// recordedByte mirror loadPacket's gap remap and gappedByte, and stay
	// two because they stack: the offsets left here go through loadPacket.
	load, notPast, done := t.newLabel(), t.newLabel(), t.newLabel()
	t.emit(
		asm.JEq.Imm32(regVLAN, 0, load),
		asm.JLT.Imm(asm.R2, tagEnd, notPast),
		asm.Sub.Imm(asm.R2, tagEnd-tagStart),
		asm.Ja.Label(load),
	)
	t.mark(notPast)
	t.emit(
		asm.Mov.Reg(asm.R1, asm.R2),
		asm.Add.Imm(asm.R1, int32(size)),
		asm.JLE.Imm(asm.R1, tagStart, load),
	)
	t.bytewise(size, tagOff, tagBuf, t.recordedByte)
	t.emit(asm.Ja.Label(done))
	t.mark(load)
	t.loadPacket(size)
	t.mark(done)
}

// recordedByte loads the byte at recorded offset R2 into A: before the
// tag, in it, or after it.
func (t *translator) recordedByte() {
	rest, after, done := t.newLabel(), t.newLabel(), t.newLabel()
	t.emit(asm.JGE.Imm(asm.R2, tagStart, rest))
	t.loadPacket(1)
	t.emit(asm.Ja.Label(done))
	t.mark(rest)
	t.emit(
		asm.JGE.Imm(asm.R2, tagEnd, after),
		asm.Mov.Imm(asm.R1, tagEnd-1),
		asm.Sub.Reg(asm.R1, asm.R2),
		asm.LSh.Imm(asm.R1, 3),
		asm.Mov.Reg32(regA, regVLAN),
		asm.RSh.Reg32(regA, asm.R1),
		asm.And.Imm32(regA, 0xff),
		asm.Ja.Label(done),
	)
	t.mark(after)
	t.emit(asm.Sub.Imm(asm.R2, tagEnd-tagStart))
	t.loadPacket(1)
	t.mark(done)
}

// loadPacket loads size bytes at packet offset R2 (from the MAC header)
// into A. For the tc filter, where the gap argument says the data starts
// after the MAC header, an offset past it is 14 bytes earlier in the
// data, one within it is read relative to it, and a load across its end
// is put together byte by byte.
func (t *translator) loadPacket(size int) {
	if !t.target.tc {
		t.loadIndirectData(size)
		return
	}
	data, within, across, done := t.newLabel(), t.newLabel(), t.newLabel(), t.newLabel()
	t.emit(
		asm.LoadMem(asm.R1, asm.RFP, gapSlot, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, data),
		asm.JLT.Imm(asm.R2, macLen, within),
		asm.Sub.Imm(asm.R2, macLen),
		asm.Ja.Label(data),
	)
	t.mark(within)
	t.emit(
		asm.Mov.Reg(asm.R1, asm.R2),
		asm.Add.Imm(asm.R1, int32(size)),
		asm.JGT.Imm(asm.R1, macLen, across),
	)
	t.loadMAC(regA, size)
	t.emit(asm.Ja.Label(done))
	t.mark(across)
	t.bytewise(size, gapOff, gapBuf, t.gappedByte)
	t.emit(asm.Ja.Label(done))
	t.mark(data)
	t.loadIndirectData(size)
	t.mark(done)
}

// gappedByte loads the byte at packet offset R2 into A where the MAC
// header is not in the data: relative to it, or 14 bytes earlier in the
// data.
func (t *translator) gappedByte() {
	after, done := t.newLabel(), t.newLabel()
	t.emit(asm.JGE.Imm(asm.R2, macLen, after))
	t.loadMAC(regA, 1)
	t.emit(asm.Ja.Label(done))
	t.mark(after)
	t.emit(asm.Sub.Imm(asm.R2, macLen))
	t.loadIndirectData(1)
	t.mark(done)
}

// bytewise puts together in A a load of size bytes at offset R2 from
// single bytes, each loaded by one, which finds its offset in R2 and
// leaves the byte in A: offSlot keeps the offset across them, buf
// gathers them.
func (t *translator) bytewise(size int, offSlot, buf int16, one func()) {
	t.emit(asm.StoreMem(asm.RFP, offSlot, asm.R2, asm.DWord))
	for i := range size {
		t.emit(
			asm.LoadMem(asm.R2, asm.RFP, offSlot, asm.DWord),
			asm.Add.Imm(asm.R2, int32(i)),
		)
		one()
		t.emit(asm.StoreMem(asm.RFP, buf+int16(i), regA, asm.Byte))
	}
	t.emit(asm.LoadMem(regA, asm.RFP, buf, sizeOf(size)))
	t.emit(toHost(regA, size)...)
}

// loadIndirectData loads size bytes at data offset R2 into A: directly
// where the program may (target.direct) and the first buffer holds them,
// else with the helper.
func (t *translator) loadIndirectData(size int) {
	if !t.target.direct {
		t.loadBytes(regA, size)
		return
	}
	// The offset in R2, bounded so that the verifier takes it as a
	// packet offset; the helper takes over past the first buffer.
	slow, done := t.newLabel(), t.newLabel()
	data, dataEnd := t.target.packetPointers()
	t.emit(
		asm.JGT.Imm(asm.R2, 0xffff-int32(size), slow),
		asm.LoadMem(asm.R1, regCtx, data, asm.Word),
		asm.LoadMem(asm.R3, regCtx, dataEnd, asm.Word),
		asm.Add.Reg(asm.R1, asm.R2),
		asm.Mov.Reg(asm.R4, asm.R1),
		asm.Add.Imm(asm.R4, int32(size)),
		asm.JGT.Reg(asm.R4, asm.R3, slow),
		asm.LoadMem(regA, asm.R1, 0, sizeOf(size)),
	)
	t.emit(toHost(regA, size)...)
	t.emit(asm.Ja.Label(done))
	t.mark(slow)
	t.loadBytes(regA, size)
	t.mark(done)
}

// loadBytes copies size bytes from packet offset R2 into dst, big
// endian, with the load-bytes helper, which reads across fragments and a
// socket buffer's paged part; an offset past the frame means no match.
func (t *translator) loadBytes(dst asm.Register, size int) {
	helper := asm.FnXdpLoadBytes
	if t.target.tc {
		helper = asm.FnSkbLoadBytes
	}
	t.emit(
		// The helper takes a 32-bit offset: bound it by the frame
		// first (as recorded: the helper refuses the last bytes of a
		// tagged one).
		asm.Mov.Reg(asm.R1, asm.R2),
		asm.Add.Imm(asm.R1, int32(size)),
		asm.LoadMem(asm.R3, asm.RFP, frameLen, asm.DWord),
		asm.JGT.Reg(asm.R1, asm.R3, t.exitNoMatch()),
		asm.Mov.Reg(asm.R1, regCtx),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, loadBuf),
		asm.Mov.Imm(asm.R4, int32(size)),
		helper.Call(),
		asm.JNE.Imm(asm.R0, 0, t.exitNoMatch()),
		asm.LoadMem(dst, asm.RFP, loadBuf, sizeOf(size)),
	)
	t.emit(toHost(dst, size)...)
}

// sizeOf is the eBPF size of a load of size bytes.
func sizeOf(size int) asm.Size {
	switch size {
	case 1:
		return asm.Byte
	case 2:
		return asm.Half
	}
	return asm.Word
}

// toHost turns a big-endian value of size bytes in r into the host's
// order, as classic BPF's loads do.
func toHost(r asm.Register, size int) asm.Instructions {
	if size == 1 {
		return nil
	}
	return asm.Instructions{asm.HostTo(asm.BE, r, sizeOf(size))}
}
