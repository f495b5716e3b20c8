package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// inject replaces the body of tgt's filter function in prog with f's
// translation for tgt.
func (f *Filter) inject(prog *ebpf.ProgramSpec, tgt target) error {
	src, err := f.body(tgt)
	if err != nil {
		return fmt.Errorf("filter expression %q: %w", shorten(f.Expr), err)
	}
	start := -1
	for i, ins := range prog.Instructions {
		if ins.Symbol() == tgt.function() {
			start = i
			break
		}
	}
	if start < 0 {
		return fmt.Errorf("program %s has no function %s to put the filter into", prog.Name, tgt.function())
	}
	end := start + 1
	for end < len(prog.Instructions) && prog.Instructions[end].Symbol() == "" {
		end++
	}
	body := make(asm.Instructions, len(src))
	copy(body, src)
	// The first instruction carries the function's name and its BTF.
	body[0] = body[0].WithMetadata(prog.Instructions[start].Metadata)
	prog.Instructions = append(append(prog.Instructions[:start:start], body...), prog.Instructions[end:]...)
	return nil
}
