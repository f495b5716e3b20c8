package bpf

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/cilium/ebpf/asm"
	cbpf "golang.org/x/net/bpf"
)

// Registers of the translated filter. R1-R5 are the helper call's
// arguments and clobbered by it; the rest survive calls.
const (
	regCtx  = asm.R6 // the context, the function's first argument
	regA    = asm.R7
	regX    = asm.R8
	regVLAN = asm.R9 // the third argument: the tag put back, or 0
)

// Stack of the translated filter, 8 bytes a slot unless said:
//   - loadBuf: where the load-bytes helper copies to.
//   - scratch: M[i], at scratch + 4*i (16 words).
//   - loopCount: the turns a loop has taken, against maxLoops.
//   - frameLen: the second argument, the frame's length as recorded.
//   - tagBuf: the bytes of a load that covers a put-back tag, gathered.
//   - gapSlot: the fourth argument of the tc filter, not 0 when the MAC
//     header is not in the data (see mac_gap in ringcap.c).
//   - gapBuf: the bytes of a load across the end of the MAC header then,
//     gathered.
//   - tagOff, gapOff: the offset of such a load computed at run time (from
//     X), kept while its bytes are loaded one by one into tagBuf, gapBuf.
const (
	loadBuf   = -8
	scratch   = loadBuf - 4*16
	loopCount = scratch - 8
	frameLen  = loopCount - 8
	tagBuf    = frameLen - 8
	gapSlot   = tagBuf - 8
	gapBuf    = gapSlot - 8
	tagOff    = gapBuf - 8
	gapOff    = tagOff - 8
	// maxLoops bounds the turns of a loop: protochain takes one per IPv6
	// extension header, and no real packet has 16.
	maxLoops = 16
)

// Linux's packet types (SKF_AD_PKTTYPE), what inbound and outbound test.
const (
	packetHost     = 0
	packetOutgoing = 4
)

// translator builds the eBPF body of one classic program, in order: every
// jump goes to a label, which marks the next instruction emitted after
// it, and cilium/ebpf turns labels into offsets when it loads the program.
type translator struct {
	prog    []cbpf.Instruction
	target  target
	out     asm.Instructions
	targets map[int]bool // classic instructions that are jump targets
	next    int          // the classic instruction after the current one
	loops   bool         // some jump goes back
	// pending is the label of the next instruction emitted; aliases are
	// the labels marked while another was pending, and mean it.
	pending string
	aliases map[string]string
	labels  int // labels made for jumps within one classic instruction
	// The exits that return a constant: a jump to classic code that
	// returns one goes to an exit instead, and a jump reaches at most
	// 32767 instructions, so a large body gets the exits it uses again
	// every exitEvery.
	exits    map[uint32]*exit
	exitBase int // raw length of the body where the exits' stretch began
	// raw is the raw length of out[:counted], kept up to date by
	// rawOut without counting the body again after each instruction.
	raw, counted int
}

// labelPrefix names the labels of the filter's code: a program holds one
// filter.
const labelPrefix = "ringcap_filter"

func label(i int) string { return fmt.Sprintf("%s.%d", labelPrefix, i) }

// exit is the next exit that returns one value.
type exit struct {
	n    int  // the how-manieth, for its label
	used bool // some jump goes to it
}

func exitLabel(v uint32, n int) string { return fmt.Sprintf("%s.ret%d.%d", labelPrefix, v, n) }

// exitEvery is the most raw instructions between a jump to a no-match
// exit and the exit, less the code of one classic instruction.
const exitEvery = 8192

// newLabel names a place within the code of a classic instruction.
func (t *translator) newLabel() string {
	t.labels++
	return fmt.Sprintf("%s.l%d", labelPrefix, t.labels)
}

// emit appends insns to the body, the first with the pending label.
func (t *translator) emit(insns ...asm.Instruction) {
	if len(insns) > 0 && t.pending != "" {
		insns[0] = insns[0].WithSymbol(t.pending)
		t.pending = ""
	}
	t.out = append(t.out, insns...)
}

// mark puts label l on the next instruction emitted. An instruction holds
// one label: one marked while another is pending stands for it.
func (t *translator) mark(l string) {
	if t.pending != "" {
		t.aliases[l] = t.pending
		return
	}
	t.pending = l
}

// resolveAliases makes the jumps to an alias go to the label it stands
// for.
func (t *translator) resolveAliases() {
	for i, ins := range t.out {
		if to, ok := t.aliases[ins.Reference()]; ok {
			t.out[i] = ins.WithReference(to)
		}
	}
}

// translate turns a classic BPF program into the body of the filter
// function for tgt, which returns its verdict: 0 for no match.
func translate(prog []cbpf.Instruction, tgt target) (asm.Instructions, error) {
	if err := validate(prog); err != nil {
		return nil, fmt.Errorf("invalid classic BPF program: %w", err)
	}
	t := &translator{prog: prog, target: tgt, targets: make(map[int]bool), exits: make(map[uint32]*exit),
		aliases: make(map[string]string)}
	reachable := t.reachable()
	// A classic instruction becomes one to a couple of dozen eBPF ones:
	// room for most at once, rather than growing a slice of large
	// elements many times (half the time an 80,000-instruction program
	// took to translate).
	t.out = make(asm.Instructions, 0, 16+16*len(prog))
	t.prologue(reachable)
	for i, ins := range prog {
		if !reachable[i] {
			// The verifier refuses code that nothing reaches.
			continue
		}
		if t.targets[i] {
			t.mark(label(i))
		}
		t.next = i + 1
		if err := t.instruction(ins); err != nil {
			return nil, fmt.Errorf("instruction %d (%v): %w", i, ins, err)
		}
		if t.rawOut()-t.exitBase > exitEvery {
			t.placeExits()
		}
	}
	t.placeExits()
	if t.pending != "" {
		return nil, errors.New("the translation runs off its end")
	}
	t.resolveAliases()
	if err := checkJumps(t.out); err != nil {
		return nil, err
	}
	return t.out, nil
}

// prologue keeps the arguments and starts A, X and the M[] that
// reachable instructions use at 0, as in the kernel's classic BPF.
func (t *translator) prologue(reachable []bool) {
	t.emit(
		asm.Mov.Reg(regCtx, asm.R1),
		asm.Mov.Reg32(asm.R2, asm.R2),
		asm.StoreMem(asm.RFP, frameLen, asm.R2, asm.DWord),
		asm.Mov.Reg32(regVLAN, asm.R3),
		asm.Mov.Imm32(regA, 0),
		asm.Mov.Imm32(regX, 0),
	)
	if t.target.tc {
		t.emit(asm.Mov.Reg32(asm.R4, asm.R4), asm.StoreMem(asm.RFP, gapSlot, asm.R4, asm.DWord))
	}
	for _, n := range slices.Sorted(maps.Keys(t.scratchUsed(reachable))) {
		t.emit(asm.StoreImm(asm.RFP, int16(scratch+4*n), 0, asm.Word))
	}
	if t.loops {
		// A full register spilled, so that the verifier knows the count
		// exactly at every turn.
		t.emit(asm.Mov.Imm(asm.R1, 0), asm.StoreMem(asm.RFP, loopCount, asm.R1, asm.DWord))
	}
}

// placeExits puts the exits that jumps go to here, and starts new ones.
func (t *translator) placeExits() {
	values := slices.DeleteFunc(slices.Sorted(maps.Keys(t.exits)), func(v uint32) bool { return !t.exits[v].used })
	t.exitBase = t.rawOut()
	if len(values) == 0 {
		return
	}
	// Code that falls through, or jumps to what follows, goes over them;
	// after an exit or a jump, a jump over them would be code nothing
	// reaches, which the verifier refuses.
	after := ""
	if last := t.out[len(t.out)-1].OpCode.JumpOp(); t.pending != "" || (last != asm.Exit && last != asm.Ja) {
		after = t.newLabel()
		t.emit(asm.Ja.Label(after))
	}
	for _, v := range values {
		e := t.exits[v]
		t.mark(exitLabel(v, e.n))
		t.emit(asm.Mov.Imm32(asm.R0, int32(v)), asm.Return())
		e.n++
		e.used = false
	}
	if after != "" {
		t.mark(after)
	}
	t.exitBase = t.rawOut()
}

// exitFor is the label of the next exit that returns v.
func (t *translator) exitFor(v uint32) string {
	e := t.exits[v]
	if e == nil {
		e = &exit{}
		t.exits[v] = e
	}
	e.used = true
	return exitLabel(v, e.n)
}

// exitNoMatch is the label of the exit that returns 0, the next one
// ahead.
func (t *translator) exitNoMatch() string { return t.exitFor(0) }

// returns says what classic instruction i comes to: a constant it
// returns, through any forward jumps, or not.
func (t *translator) returns(i int) (uint32, bool) {
	for range len(t.prog) {
		switch ins := t.prog[i].(type) {
		case cbpf.RetConstant:
			return ins.Val, true
		case cbpf.Jump:
			n := i + 1 + int(int32(ins.Skip))
			if n <= i {
				return 0, false
			}
			i = n
		default:
			return 0, false
		}
	}
	return 0, false
}

// targetLabel is where a forward jump to classic instruction i goes: an
// exit, if i returns a constant, else i's code.
func (t *translator) targetLabel(i int) string {
	if v, ok := t.returns(i); ok {
		return t.exitFor(v)
	}
	return label(i)
}

// rawOut is the raw length of the body so far.
func (t *translator) rawOut() int {
	t.raw += rawLen(t.out[t.counted:])
	t.counted = len(t.out)
	return t.raw
}

// rawLen is the length of insns in raw instructions, the unit of jump
// offsets: a 64-bit constant load takes two.
func rawLen(insns asm.Instructions) int {
	n := 0
	for _, ins := range insns {
		n += int(ins.Size()) / asm.InstructionSize
	}
	return n
}

// checkJumps refuses a body with a jump longer than eBPF's 16-bit offset
// takes: a classic jump over hundreds of instructions, each of which
// became dozens. cilium/ebpf would wrap the offset around.
func checkJumps(insns asm.Instructions) error {
	at := make(map[string]int)
	off := 0
	for _, ins := range insns {
		if sym := ins.Symbol(); sym != "" {
			at[sym] = off
		}
		off += int(ins.Size()) / asm.InstructionSize
	}
	off = 0
	for _, ins := range insns {
		if ref := ins.Reference(); ref != "" && ins.OpCode.Class().IsJump() && !ins.IsFunctionCall() {
			if target, ok := at[ref]; ok {
				if d := target - off - 1; d > math.MaxInt16 || d < math.MinInt16 {
					return fmt.Errorf("the expression is too large for this program: a jump spans %d instructions, eBPF jumps at most %d", d, math.MaxInt16)
				}
			}
		}
		off += int(ins.Size()) / asm.InstructionSize
	}
	return nil
}
