package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/asm"
	cbpf "golang.org/x/net/bpf"
)

func reg(r cbpf.Register) asm.Register {
	if r == cbpf.RegX {
		return regX
	}
	return regA
}

// jump goes to classic instruction target, or nowhere if that is the next
// one.
func (t *translator) jump(target int) {
	if _, ok := t.returns(target); ok && target >= t.next {
		// Not emitted where nothing else reaches it: jump to an
		// exit even for the next instruction.
		t.emit(asm.Ja.Label(t.targetLabel(target)))
		return
	}
	if target != t.next {
		t.emit(asm.Ja.Label(label(target)))
	}
}

// instruction emits the code of one classic instruction.
func (t *translator) instruction(ins cbpf.Instruction) error {
	switch ins := ins.(type) {
	case cbpf.LoadConstant:
		t.emit(asm.Mov.Imm32(reg(ins.Dst), int32(ins.Val)))
	case cbpf.LoadScratch:
		t.emit(asm.LoadMem(reg(ins.Dst), asm.RFP, int16(scratch+4*ins.N), asm.Word))
	case cbpf.StoreScratch:
		t.emit(asm.StoreMem(asm.RFP, int16(scratch+4*ins.N), reg(ins.Src), asm.Word))
	case cbpf.LoadExtension:
		return t.loadExtension(ins.Num)
	case cbpf.LoadAbsolute:
		t.loadRecorded(regA, ins.Off, ins.Size)
	case cbpf.LoadMemShift:
		t.loadRecorded(regX, ins.Off, 1)
		t.emit(asm.And.Imm32(regX, 0xf), asm.LSh.Imm32(regX, 2))
	case cbpf.LoadIndirect:
		t.loadIndirect(ins.Off, ins.Size)
	case cbpf.ALUOpConstant:
		return t.aluConstant(ins.Op, ins.Val)
	case cbpf.ALUOpX:
		return t.aluX(ins.Op)
	case cbpf.NegateA:
		t.emit(asm.Neg.Imm32(regA, 0))
	case cbpf.TAX:
		t.emit(asm.Mov.Reg32(regX, regA))
	case cbpf.TXA:
		t.emit(asm.Mov.Reg32(regA, regX))
	case cbpf.Jump:
		t.always(t.next + int(int32(ins.Skip)))
	case cbpf.JumpIf:
		t.condJump(ins.Cond, func(op asm.JumpOp, l string) asm.Instruction {
			return op.Imm32(regA, int32(ins.Val), l)
		}, ins.SkipTrue, ins.SkipFalse)
	case cbpf.JumpIfX:
		t.condJump(ins.Cond, func(op asm.JumpOp, l string) asm.Instruction {
			return op.Reg32(regA, regX, l)
		}, ins.SkipTrue, ins.SkipFalse)
	case cbpf.RetA:
		t.emit(asm.Mov.Reg32(asm.R0, regA), asm.Return())
	case cbpf.RetConstant:
		t.emit(asm.Mov.Imm32(asm.R0, int32(ins.Val)), asm.Return())
	default:
		return errors.New("not a classic BPF instruction ringcap can translate")
	}
	return nil
}

// loadExtension loads the extension num into A.
func (t *translator) loadExtension(num cbpf.Extension) error {
	switch num {
	case cbpf.ExtLen:
		t.emit(asm.LoadMem(regA, asm.RFP, frameLen, asm.DWord))
	case cbpf.ExtType:
		// inbound and outbound: what the instance sees is known when it
		// is loaded.
		pktType := int32(packetHost)
		if t.target.outbound {
			pktType = packetOutgoing
		}
		t.emit(asm.Mov.Imm32(regA, pktType))
	default:
		// validate refuses these first.
		return fmt.Errorf("extension %d is a socket filter's, ringcap's programs have none", num)
	}
	return nil
}

// always emits a classic unconditional jump to target.
func (t *translator) always(target int) {
	if target >= t.next {
		t.jump(target)
		return
	}
	// A loop: the verifier must see it end, so it ends after maxLoops
	// turns, with no match.
	t.emit(
		asm.LoadMem(asm.R1, asm.RFP, loopCount, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.RFP, loopCount, asm.R1, asm.DWord),
		asm.JGT.Imm(asm.R1, maxLoops, t.exitNoMatch()),
		asm.Ja.Label(label(target)),
	)
}

var aluOps = map[cbpf.ALUOp]asm.ALUOp{
	cbpf.ALUOpAdd:        asm.Add,
	cbpf.ALUOpSub:        asm.Sub,
	cbpf.ALUOpMul:        asm.Mul,
	cbpf.ALUOpDiv:        asm.Div,
	cbpf.ALUOpOr:         asm.Or,
	cbpf.ALUOpAnd:        asm.And,
	cbpf.ALUOpShiftLeft:  asm.LSh,
	cbpf.ALUOpShiftRight: asm.RSh,
	cbpf.ALUOpMod:        asm.Mod,
	cbpf.ALUOpXor:        asm.Xor,
}

func isShift(op cbpf.ALUOp) bool { return op == cbpf.ALUOpShiftLeft || op == cbpf.ALUOpShiftRight }

func (t *translator) aluConstant(op cbpf.ALUOp, val uint32) error {
	eop, ok := aluOps[op]
	if !ok {
		return fmt.Errorf("unknown ALU operation %d", op)
	}
	if isShift(op) && val >= 32 {
		// eBPF has no 32-bit shift by 32 or more; classic BPF's gives 0.
		t.emit(asm.Mov.Imm32(regA, 0))
		return nil
	}
	t.emit(eop.Imm32(regA, int32(val)))
	return nil
}

func (t *translator) aluX(op cbpf.ALUOp) error {
	eop, ok := aluOps[op]
	if !ok {
		return fmt.Errorf("unknown ALU operation %d", op)
	}
	switch {
	case op == cbpf.ALUOpDiv || op == cbpf.ALUOpMod:
		// eBPF defines x/0 as 0 and x%0 as x; classic BPF ends the
		// program with 0.
		t.emit(asm.JEq.Imm32(regX, 0, t.exitNoMatch()), eop.Reg32(regA, regX))
	case isShift(op):
		// eBPF masks the shift count; classic BPF's shift by 32 or more
		// gives 0.
		zero, done := t.newLabel(), t.newLabel()
		t.emit(asm.JGE.Imm32(regX, 32, zero), eop.Reg32(regA, regX), asm.Ja.Label(done))
		t.mark(zero)
		t.emit(asm.Mov.Imm32(regA, 0))
		t.mark(done)
	default:
		t.emit(eop.Reg32(regA, regX))
	}
	return nil
}

// condJump emits a classic conditional jump: cmp builds the eBPF jump for
// an operation and a label.
func (t *translator) condJump(cond cbpf.JumpTest, cmp func(asm.JumpOp, string) asm.Instruction, skipTrue, skipFalse uint8) {
	onTrue, onFalse := t.next+int(skipTrue), t.next+int(skipFalse)
	op := jumpOps[cond]
	if cond == cbpf.JumpBitsNotSet {
		op, onTrue, onFalse = asm.JSet, onFalse, onTrue
	}
	if onTrue == onFalse {
		t.jump(onTrue)
		return
	}
	if inverse, ok := inverseJumps[op]; ok && onTrue == t.next {
		// Fall through on true: jump on the opposite.
		op, onTrue, onFalse = inverse, onFalse, onTrue
	}
	t.emit(cmp(op, t.targetLabel(onTrue)))
	t.jump(onFalse)
}

// jumpOps are the eBPF jumps of classic BPF's conditions, but for
// JumpBitsNotSet, a JSet with its targets swapped.
var jumpOps = map[cbpf.JumpTest]asm.JumpOp{
	cbpf.JumpEqual: asm.JEq, cbpf.JumpNotEqual: asm.JNE,
	cbpf.JumpGreaterThan: asm.JGT, cbpf.JumpLessThan: asm.JLT,
	cbpf.JumpGreaterOrEqual: asm.JGE, cbpf.JumpLessOrEqual: asm.JLE,
	cbpf.JumpBitsSet: asm.JSet,
}

// inverseJumps are the eBPF conditions whose negation eBPF has too.
var inverseJumps = map[asm.JumpOp]asm.JumpOp{
	asm.JEq: asm.JNE, asm.JNE: asm.JEq,
	asm.JGT: asm.JLE, asm.JLE: asm.JGT,
	asm.JGE: asm.JLT, asm.JLT: asm.JGE,
}
