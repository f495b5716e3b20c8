package bpf

import (
	"github.com/cilium/ebpf/asm"
	cbpf "golang.org/x/net/bpf"
)

// Filter is a pcap-filter(7) expression, compiled by libpcap for Ethernet
// into classic BPF (compile.go), and translated (translate.go) into the
// eBPF body of ringcap.c's filter functions, one translation per kind of
// program instance (target), which the loader puts into the program
// (inject.go).
//
// The translation is ringcap's own, rather than a translator library's
// such as cloudflare/cbpfc, for what ringcap's programs need of it: a load
// past the first buffer (an XDP fragment, a socket buffer's paged part)
// falls back to the load-bytes helper instead of ending the filter; the
// jumps back of libpcap's protochain loops are kept, bounded; and every
// load is remapped to the frame as recorded, around a VLAN tag put back
// and a MAC header outside the data (the tc filter's gap). It keeps
// classic BPF's rules: A, X and the scratch memory M[] start at 0; a load
// outside the frame ends the filter with 0 (no match); `len` is the length
// of the whole frame, all fragments; a division or modulo by X = 0 ends it
// with 0; a shift by 32 or more gives 0.
//
// The expression sees the frame as it is recorded: where the program put
// back a VLAN tag that the driver or the stack had taken out, loads past
// the MAC addresses read 4 bytes earlier in the packet, and the 4 bytes
// of the tag come from the filter's vlan argument; a load that covers
// some of the tag's bytes is put together byte by byte. The tc filter's
// gap argument moves the MAC header out of the data in the same way.
//
// Loads at a constant offset read the first buffer directly, after a
// bounds check; past it (a multi-buffer jumbo frame, a socket buffer's
// paged part), the load-bytes helper copies the bytes. Loads at X+k read
// directly too where the program is loaded with CAP_PERFMON, and through
// the helper otherwise: direct access at X+k is pointer arithmetic with a
// register, which the verifier allows only with CAP_PERFMON. The helper
// costs about 25 ns a load (docs/performance.md).
type Filter struct {
	Expr    string
	Classic []cbpf.Instruction // what libpcap compiled
	bodies  map[target]asm.Instructions
}

// target is what a translation is for.
type target struct {
	tc       bool // the socket-buffer context of ringcap_filter_tc
	direct   bool // loaded with CAP_PERFMON: loads at X+k read directly
	outbound bool // the instance sees sent frames
}

// function is the function in ringcap.c whose body the filter replaces.
func (t target) function() string {
	if t.tc {
		return "ringcap_filter_tc"
	}
	return "ringcap_filter_xdp"
}

// body returns the translation for t, made on first use.
func (f *Filter) body(t target) (asm.Instructions, error) {
	if b, ok := f.bodies[t]; ok {
		return b, nil
	}
	b, err := translate(f.Classic, t)
	if err != nil {
		return nil, err
	}
	f.bodies[t] = b
	return b, nil
}

// newFilter translates a classic program for XDP, which finds what is
// wrong with it before anything is loaded; the other translations are
// made as instances need them.
func newFilter(expr string, classic []cbpf.Instruction) (*Filter, error) {
	f := &Filter{Expr: expr, Classic: classic, bodies: make(map[target]asm.Instructions)}
	if _, err := f.body(target{}); err != nil {
		return nil, err
	}
	return f, nil
}
