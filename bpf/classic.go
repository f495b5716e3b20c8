package bpf

import (
	"errors"
	"fmt"

	cbpf "golang.org/x/net/bpf"
)

// successors returns where classic instruction i goes next, and whether
// it gets there by a jump.
func successors(prog []cbpf.Instruction, i int) (next []int, jump bool) {
	switch ins := prog[i].(type) {
	case cbpf.RetA, cbpf.RetConstant:
		return nil, false
	case cbpf.Jump:
		// libpcap's protochain walks the header chain in a loop: its
		// jump back is a negative offset.
		return []int{i + 1 + int(int32(ins.Skip))}, true
	case cbpf.JumpIf:
		return []int{i + 1 + int(ins.SkipTrue), i + 1 + int(ins.SkipFalse)}, true
	case cbpf.JumpIfX:
		return []int{i + 1 + int(ins.SkipTrue), i + 1 + int(ins.SkipFalse)}, true
	}
	return []int{i + 1}, false
}

// validate applies the kernel's rules for classic BPF programs, less the
// one against jumps back: jumps land within the program, no path runs
// off its end, no constant division by zero, no extension but len.
func validate(prog []cbpf.Instruction) error {
	if len(prog) == 0 {
		return errors.New("no instructions")
	}
	for i, ins := range prog {
		next, _ := successors(prog, i)
		for _, n := range next {
			if n < 0 || n >= len(prog) {
				return fmt.Errorf("instruction %d jumps to %d, outside the program", i, n)
			}
		}
		switch ins := ins.(type) {
		case cbpf.ALUOpConstant:
			if ins.Val == 0 && (ins.Op == cbpf.ALUOpDiv || ins.Op == cbpf.ALUOpMod) {
				return fmt.Errorf("instruction %d divides by zero", i)
			}
		case cbpf.LoadExtension:
			if ins.Num != cbpf.ExtLen && ins.Num != cbpf.ExtType {
				return fmt.Errorf("instruction %d reads extension %d, a socket filter's: ringcap's programs have none", i, ins.Num)
			}
		case cbpf.RawInstruction:
			return fmt.Errorf("instruction %d (%#x) is not classic BPF", i, ins.Op)
		}
	}
	return nil
}

// reachable marks the instructions that some path from the first one
// reaches, and records the jump targets among them.
func (t *translator) reachable() []bool {
	seen := make([]bool, len(t.prog))
	work := []int{0}
	seen[0] = true
	for len(work) > 0 {
		i := work[len(work)-1]
		work = work[:len(work)-1]
		next, jump := successors(t.prog, i)
		for _, n := range next {
			if _, ok := t.returns(n); jump && ok && n > i {
				// The jump goes to an exit instead.
				continue
			}
			if jump {
				t.targets[n] = true
				if n <= i {
					t.loops = true
				}
			}
			if !seen[n] {
				seen[n] = true
				work = append(work, n)
			}
		}
	}
	return seen
}

// scratchUsed returns the M[] slots that reachable instructions use:
// they start at 0, as in the kernel's classic BPF.
func (t *translator) scratchUsed(reachable []bool) map[int]bool {
	used := make(map[int]bool)
	for i, ins := range t.prog {
		if !reachable[i] {
			continue
		}
		switch ins := ins.(type) {
		case cbpf.LoadScratch:
			used[ins.N] = true
		case cbpf.StoreScratch:
			used[ins.N] = true
		}
	}
	return used
}
