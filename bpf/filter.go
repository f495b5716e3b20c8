package bpf

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcap"
	cbpf "golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Filter is a pcap-filter(7) expression, compiled by libpcap for Ethernet
// into classic BPF, and translated into the eBPF body of ringcap.c's filter
// functions, one translation per kind of program instance (target).
//
// The translation is ringcap's own: no translator library can be had
// here. It keeps classic BPF's rules: A, X and the scratch memory M[]
// start at 0; a load outside the frame ends the filter with 0 (no match);
// `len` is the length of the whole frame, all fragments; a division or
// modulo by X = 0 ends it with 0; a shift by 32 or more gives 0.
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
// costs about 25 ns a load (see the README).
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

// notAtXDP are the pcap-filter keywords that cannot mean anything to a
// program that sees an interface's frames.
var notAtXDP = map[string]string{
	"ifname":  "it names an interface in OpenBSD pf logs; choose interfaces with -i",
	"on":      "it names an interface in OpenBSD pf logs; choose interfaces with -i",
	"ifindex": "it reads the interface index of Linux cooked captures; choose interfaces with -i",
}

// MaxFilterWords bounds the size of an expression given to libpcap. Its
// optimiser takes memory that grows with the square of the expression's
// size and time with about its cube, and sets no bound of its own: 200
// `host` terms (600 words) take 13 MB and half a second, 1,000 take
// 118 MB and a minute, 10,000 several gigabytes. At this bound the
// dearest primitive measured, portrange (`portrange 1-2 or 3-4 or ...`,
// 300 terms), takes 93 MB and 35 seconds, as it would in tcpdump.
const MaxFilterWords = 600

// CompileFilter compiles expr with libpcap and translates it. The error
// is libpcap's own words for an expression it refuses.
func CompileFilter(expr string) (*Filter, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, errors.New("empty filter expression")
	}
	if n := filterWords(expr); n > MaxFilterWords {
		return nil, fmt.Errorf("filter expression %q: %d words, more than the %d ringcap gives libpcap, whose optimiser needs memory "+
			"that grows with the square of the size: use fewer terms (net ADDR/LEN for many hosts, portrange for many ports)",
			shorten(expr), n, MaxFilterWords)
	}
	return compileFilter(expr)
}

// compileFilter is CompileFilter past the bound on the expression's size.
func compileFilter(expr string) (*Filter, error) {
	for _, word := range strings.FieldsFunc(expr, func(r rune) bool { return strings.ContainsRune(" \t\n()!&|", r) }) {
		if why, ok := notAtXDP[word]; ok {
			return nil, fmt.Errorf("filter expression %q: %q cannot be used here: %s", shorten(expr), word, why)
		}
	}
	raw, err := pcap.CompileBPFFilter(layers.LinkTypeEthernet, MaxSnapLen, expr)
	if err != nil {
		return nil, fmt.Errorf("filter expression %q: %v", shorten(expr), err)
	}
	classic := make([]cbpf.Instruction, len(raw))
	for i, ins := range raw {
		classic[i] = cbpf.RawInstruction{Op: ins.Code, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}.Disassemble()
	}
	f, err := newFilter(expr, classic)
	if err != nil {
		return nil, fmt.Errorf("filter expression %q: %w", shorten(expr), err)
	}
	return f, nil
}

// filterWords counts the words of an expression, as near to libpcap's
// scanner as a bound needs (libpcap has no way to count them short of
// compiling): what spaces separate, with parentheses, `!`, `&&` and `||`
// words of their own, so that `a||b` counts as `a or b` does.
func filterWords(expr string) int {
	n, inWord := 0, false
	for i := 0; i < len(expr); i++ {
		rest := expr[i:]
		switch {
		case strings.ContainsRune(" \t\n\r", rune(expr[i])):
			inWord = false
		case strings.HasPrefix(rest, "&&") || strings.HasPrefix(rest, "||"):
			n, inWord = n+1, false
			i++
		case rest[0] == '(' || rest[0] == ')' || (rest[0] == '!' && !strings.HasPrefix(rest, "!=")):
			n, inWord = n+1, false
		case !inWord:
			n, inWord = n+1, true
		}
	}
	return n
}

// shorten keeps an error line short when the expression is long.
func shorten(expr string) string {
	if len(expr) > 60 {
		return expr[:57] + "..."
	}
	return expr
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

// Registers of the translated filter. R1-R5 are the helper call's
// arguments and clobbered by it; the rest survive calls.
const (
	regCtx  = asm.R6 // the context, the function's first argument
	regA    = asm.R7
	regX    = asm.R8
	regVLAN = asm.R9 // the third argument: the tag put back, or 0
)

// Stack of the translated filter: the load-bytes helper copies into
// loadBuf, M[i] lives at scratch + 4*i, loopCount counts the turns of a
// loop, frameLen holds the second argument (the frame's length as
// recorded), tagBuf assembles a load that covers a put-back tag, gap holds
// the fourth argument of the tc filter (the MAC header is not in the data:
// see mac_gap in ringcap.c), and gapBuf assembles a load across the end
// of the MAC header then.
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

// Linux's packet types (SKF_AD_PKTTYPE), what inbound and outbound test.
const (
	packetHost     = 0
	packetOutgoing = 4
)

// translator builds the eBPF body of one classic program.
type translator struct {
	prog    []cbpf.Instruction
	target  target
	out     asm.Instructions
	targets map[int]bool // classic instructions that are jump targets
	next    int          // the classic instruction after the current one
	loops   bool         // some jump goes back
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

// translate turns a classic BPF program into the body of the filter
// function for tgt, which returns its verdict: 0 for no match.
func translate(prog []cbpf.Instruction, tgt target) (asm.Instructions, error) {
	if err := validate(prog); err != nil {
		return nil, fmt.Errorf("invalid classic BPF program: %w", err)
	}
	t := &translator{prog: prog, target: tgt, targets: make(map[int]bool), exits: make(map[uint32]*exit)}
	reachable := t.reachable()
	// A classic instruction becomes one to a couple of dozen eBPF ones:
	// room for most at once, rather than growing a slice of large
	// elements many times (half the time an 80,000-instruction program
	// took to translate).
	t.out = make(asm.Instructions, 0, 16+16*len(prog))
	t.out = append(t.out,
		asm.Mov.Reg(regCtx, asm.R1),
		asm.Mov.Reg32(asm.R2, asm.R2),
		asm.StoreMem(asm.RFP, frameLen, asm.R2, asm.DWord),
		asm.Mov.Reg32(regVLAN, asm.R3),
		asm.Mov.Imm32(regA, 0),
		asm.Mov.Imm32(regX, 0),
	)
	if tgt.tc {
		t.out = append(t.out, asm.Mov.Reg32(asm.R4, asm.R4), asm.StoreMem(asm.RFP, gapSlot, asm.R4, asm.DWord))
	}
	for n := range t.scratchUsed(reachable) {
		t.out = append(t.out, asm.StoreImm(asm.RFP, int16(scratch+4*n), 0, asm.Word))
	}
	if t.loops {
		// A full register spilled, so that the verifier knows the count
		// exactly at every turn.
		t.out = append(t.out, asm.Mov.Imm(asm.R1, 0), asm.StoreMem(asm.RFP, loopCount, asm.R1, asm.DWord))
	}
	for i, ins := range prog {
		if !reachable[i] {
			// The verifier refuses code that nothing reaches.
			continue
		}
		start := len(t.out)
		t.next = i + 1
		if err := t.emit(ins); err != nil {
			return nil, fmt.Errorf("instruction %d (%v): %w", i, ins, err)
		}
		if t.targets[i] {
			if len(t.out) == start {
				// A jump to the next instruction is no code, but
				// the label needs one: jump nowhere.
				t.out = append(t.out, over(asm.Ja.Label(""), nil))
			}
			t.out[start] = t.out[start].WithSymbol(label(i))
		}
		if t.rawOut()-t.exitBase > exitEvery {
			t.placeExits()
		}
	}
	t.placeExits()
	if err := checkJumps(t.out); err != nil {
		return nil, err
	}
	return t.out, nil
}

// placeExits puts the exits that jumps go to here, and starts new ones.
func (t *translator) placeExits() {
	var code asm.Instructions
	values := slices.Sorted(maps.Keys(t.exits))
	for _, v := range values {
		e := t.exits[v]
		if !e.used {
			continue
		}
		code = append(code, asm.Mov.Imm32(asm.R0, int32(v)).WithSymbol(exitLabel(v, e.n)), asm.Return())
		e.n++
		e.used = false
	}
	t.exitBase = t.rawOut()
	if len(code) == 0 {
		return
	}
	// Code that falls through goes over them; after an exit or a jump,
	// a jump over them would be code nothing reaches, which the
	// verifier refuses.
	if last := t.out[len(t.out)-1].OpCode.JumpOp(); last != asm.Exit && last != asm.Ja {
		t.out = append(t.out, over(asm.Ja.Label(""), code))
	}
	t.out = append(t.out, code...)
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
		t.out = append(t.out, asm.Ja.Label(t.targetLabel(target)))
		return
	}
	if target != t.next {
		t.out = append(t.out, asm.Ja.Label(label(target)))
	}
}

// exitNoMatch is the label of the exit that returns 0, the next one
// ahead.
func (t *translator) exitNoMatch() string { return t.exitFor(0) }

func (t *translator) emit(ins cbpf.Instruction) error {
	switch ins := ins.(type) {
	case cbpf.LoadConstant:
		t.out = append(t.out, asm.Mov.Imm32(reg(ins.Dst), int32(ins.Val)))
	case cbpf.LoadScratch:
		t.out = append(t.out, asm.LoadMem(reg(ins.Dst), asm.RFP, int16(scratch+4*ins.N), asm.Word))
	case cbpf.StoreScratch:
		t.out = append(t.out, asm.StoreMem(asm.RFP, int16(scratch+4*ins.N), reg(ins.Src), asm.Word))
	case cbpf.LoadExtension:
		switch ins.Num {
		case cbpf.ExtLen:
			t.out = append(t.out, asm.LoadMem(regA, asm.RFP, frameLen, asm.DWord))
		case cbpf.ExtType:
			// inbound and outbound: what the instance sees is known
			// when it is loaded.
			pktType := int32(packetHost)
			if t.target.outbound {
				pktType = packetOutgoing
			}
			t.out = append(t.out, asm.Mov.Imm32(regA, pktType))
		default:
			// validate refuses these first.
			return fmt.Errorf("extension %d is a socket filter's, ringcap's programs have none", ins.Num)
		}
	case cbpf.LoadAbsolute:
		t.out = append(t.out, t.loadRecorded(regA, ins.Off, ins.Size)...)
	case cbpf.LoadMemShift:
		t.out = append(t.out, t.loadRecorded(regX, ins.Off, 1)...)
		t.out = append(t.out, asm.And.Imm32(regX, 0xf), asm.LSh.Imm32(regX, 2))
	case cbpf.LoadIndirect:
		t.loadIndirect(ins.Off, ins.Size)
	case cbpf.ALUOpConstant:
		return t.aluConstant(ins.Op, ins.Val)
	case cbpf.ALUOpX:
		return t.aluX(ins.Op)
	case cbpf.NegateA:
		t.out = append(t.out, asm.Neg.Imm32(regA, 0))
	case cbpf.TAX:
		t.out = append(t.out, asm.Mov.Reg32(regX, regA))
	case cbpf.TXA:
		t.out = append(t.out, asm.Mov.Reg32(regA, regX))
	case cbpf.Jump:
		target := t.next + int(int32(ins.Skip))
		if target < t.next {
			// A loop: the verifier must see it end, so it ends after
			// maxLoops turns, with no match.
			t.out = append(t.out,
				asm.LoadMem(asm.R1, asm.RFP, loopCount, asm.DWord),
				asm.Add.Imm(asm.R1, 1),
				asm.StoreMem(asm.RFP, loopCount, asm.R1, asm.DWord),
				asm.JGT.Imm(asm.R1, maxLoops, t.exitNoMatch()),
			)
		}
		if target >= t.next {
			t.jump(target)
			break
		}
		t.out = append(t.out, asm.Ja.Label(label(target)))
	case cbpf.JumpIf:
		t.condJump(ins.Cond, func(op asm.JumpOp, l string) asm.Instruction {
			return op.Imm32(regA, int32(ins.Val), l)
		}, ins.SkipTrue, ins.SkipFalse)
	case cbpf.JumpIfX:
		t.condJump(ins.Cond, func(op asm.JumpOp, l string) asm.Instruction {
			return op.Reg32(regA, regX, l)
		}, ins.SkipTrue, ins.SkipFalse)
	case cbpf.RetA:
		t.out = append(t.out, asm.Mov.Reg32(asm.R0, regA), asm.Return())
	case cbpf.RetConstant:
		t.out = append(t.out, asm.Mov.Imm32(asm.R0, int32(ins.Val)), asm.Return())
	default:
		return errors.New("not a classic BPF instruction ringcap can translate")
	}
	return nil
}

// loadRecorded loads size bytes at offset off of the frame as recorded,
// big endian, into dst: with a tag put back (regVLAN not 0), offsets past
// the MAC addresses are 4 bytes later than in the packet.
func (t *translator) loadRecorded(dst asm.Register, off uint32, size int) asm.Instructions {
	if off+uint32(size) <= tagStart {
		return t.loadAbsolute(dst, off, size)
	}
	var tagged asm.Instructions
	switch {
	case off >= tagEnd:
		tagged = t.loadAbsolute(dst, off-(tagEnd-tagStart), size)
	case size == 1:
		tagged = tagByte(dst, off)
	default:
		// Some bytes from the tag, some from the packet: assembled
		// byte by byte on the stack.
		for i := range uint32(size) {
			p := off + i
			switch {
			case p < tagStart:
				tagged = append(tagged, t.loadAbsolute(dst, p, 1)...)
			case p < tagEnd:
				tagged = append(tagged, tagByte(dst, p)...)
			default:
				tagged = append(tagged, t.loadAbsolute(dst, p-(tagEnd-tagStart), 1)...)
			}
			tagged = append(tagged, asm.StoreMem(asm.RFP, int16(tagBuf+int32(i)), dst, asm.Byte))
		}
		tagged = append(tagged, asm.LoadMem(dst, asm.RFP, tagBuf, sizeOf(size)))
		tagged = append(tagged, toHost(dst, size)...)
	}
	untagged := append(t.loadAbsolute(dst, off, size), over(asm.Ja.Label(""), tagged))
	return slices.Concat(asm.Instructions{over(asm.JNE.Imm32(regVLAN, 0, ""), untagged)}, untagged, tagged)
}

// tagByte puts byte p (within the tag) of the recorded frame into dst.
func tagByte(dst asm.Register, p uint32) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg32(dst, regVLAN),
		asm.RSh.Imm32(dst, int32(8*(tagEnd-1-p))),
		asm.And.Imm32(dst, 0xff),
	}
}

// loadAbsolute loads size bytes at offset off of the frame from its MAC
// header, big endian, into dst: for the tc filter, where the gap argument
// says the data starts after the MAC header, the MAC header's bytes are
// read relative to it and the others 14 bytes earlier in the data.
func (t *translator) loadAbsolute(dst asm.Register, off uint32, size int) asm.Instructions {
	if !t.target.tc {
		return t.loadData(dst, off, size)
	}
	var gapped asm.Instructions
	switch {
	case off+uint32(size) <= macLen:
		gapped = append(asm.Instructions{asm.Mov.Imm(asm.R2, int32(off))}, t.loadMAC(dst, size)...)
	case off >= macLen:
		gapped = t.loadData(dst, off-macLen, size)
	default:
		for i := range uint32(size) {
			if p := off + i; p < macLen {
				gapped = append(gapped, asm.Mov.Imm(asm.R2, int32(p)))
				gapped = append(gapped, t.loadMAC(dst, 1)...)
			} else {
				gapped = append(gapped, t.loadData(dst, p-macLen, 1)...)
			}
			gapped = append(gapped, asm.StoreMem(asm.RFP, int16(gapBuf+int32(i)), dst, asm.Byte))
		}
		gapped = append(gapped, asm.LoadMem(dst, asm.RFP, gapBuf, sizeOf(size)))
		gapped = append(gapped, toHost(dst, size)...)
	}
	plain := append(t.loadData(dst, off, size), over(asm.Ja.Label(""), gapped))
	return slices.Concat(asm.Instructions{
		asm.LoadMem(asm.R1, asm.RFP, gapSlot, asm.DWord),
		over(asm.JNE.Imm(asm.R1, 0, ""), plain),
	}, plain, gapped)
}

// loadMAC loads size bytes at MAC header offset R2 into dst, big endian,
// with bpf_skb_load_bytes_relative().
func (t *translator) loadMAC(dst asm.Register, size int) asm.Instructions {
	return append(asm.Instructions{
		asm.Mov.Reg(asm.R1, regCtx),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, loadBuf),
		asm.Mov.Imm(asm.R4, int32(size)),
		asm.Mov.Imm(asm.R5, bpfHdrStartMAC),
		asm.FnSkbLoadBytesRelative.Call(),
		asm.JNE.Imm(asm.R0, 0, t.exitNoMatch()),
		asm.LoadMem(dst, asm.RFP, loadBuf, sizeOf(size)),
	}, toHost(dst, size)...)
}

// loadData loads size bytes at offset off of the data, big endian, into
// dst.
func (t *translator) loadData(dst asm.Register, off uint32, size int) asm.Instructions {
	slow := append(asm.Instructions{asm.LoadImm(asm.R2, int64(off), asm.DWord)}, t.loadBytes(dst, size)...)
	// The verifier takes constant packet offsets below 64 KiB; where the
	// first buffer does not hold the bytes, the helper copies them.
	if uint64(off)+uint64(size) >= 0xffff {
		return slow
	}
	var fast asm.Instructions
	if off > 0x7fff {
		fast = asm.Instructions{asm.Add.Imm(asm.R2, int32(off)), asm.LoadMem(dst, asm.R2, 0, sizeOf(size))}
	} else {
		fast = asm.Instructions{asm.LoadMem(dst, asm.R2, int16(off), sizeOf(size))}
	}
	fast = append(fast, toHost(dst, size)...)
	fast = append(fast, over(asm.Ja.Label(""), slow))
	data, dataEnd := t.target.packetPointers()
	return slices.Concat(asm.Instructions{
		asm.LoadMem(asm.R2, regCtx, data, asm.Word),
		asm.LoadMem(asm.R3, regCtx, dataEnd, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R2),
		asm.Add.Imm(asm.R1, int32(off)+int32(size)),
		over(asm.JGT.Reg(asm.R1, asm.R3, ""), fast),
	}, fast, slow)
}

// packetPointers are the context's offsets of data and data_end.
func (t target) packetPointers() (data, dataEnd int16) {
	if t.tc {
		return skbData, skbDataEnd
	}
	return xdpData, xdpDataEnd
}

// over makes jump, built without a label, jump over insns: jumps within
// the code for one classic instruction need no name.
func over(jump asm.Instruction, insns asm.Instructions) asm.Instruction {
	jump = jump.WithReference("")
	jump.Offset = int16(rawLen(insns))
	return jump
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

// loadIndirect loads size bytes at frame offset X+off into A. The offset
// is computed in 64 bits, so that it never wraps around to the start of
// the frame as a 32-bit sum would.
func (t *translator) loadIndirect(off uint32, size int) {
	t.out = append(t.out,
		asm.LoadImm(asm.R2, int64(off), asm.DWord),
		asm.Add.Reg(asm.R2, regX),
	)
	// With a tag put back, an offset past it is 4 bytes earlier in the
	// packet, one before it is the same, and a load that covers any of
	// the tag's bytes is put together byte by byte.
	load := t.loadPacket(size)
	covers := t.bytewise(size, tagOff, tagBuf, func() asm.Instructions {
		// The byte at recorded offset R2: before the tag, in it, or
		// after it.
		after := append(asm.Instructions{asm.Sub.Imm(asm.R2, tagEnd-tagStart)}, t.loadPacket(1)...)
		in := asm.Instructions{
			asm.Mov.Imm(asm.R1, tagEnd-1),
			asm.Sub.Reg(asm.R1, asm.R2),
			asm.LSh.Imm(asm.R1, 3),
			asm.Mov.Reg32(regA, regVLAN),
			asm.RSh.Reg32(regA, asm.R1),
			asm.And.Imm32(regA, 0xff),
			over(asm.Ja.Label(""), after),
		}
		rest := slices.Concat(asm.Instructions{over(asm.JGE.Imm(asm.R2, tagEnd, ""), in)}, in, after)
		before := append(t.loadPacket(1), over(asm.Ja.Label(""), rest))
		return slices.Concat(asm.Instructions{over(asm.JGE.Imm(asm.R2, tagStart, ""), before)}, before, rest)
	})
	covers = append(covers, over(asm.Ja.Label(""), load))
	// R2 >= 16: past; R2 + size <= 12: the packet's; else: covers.
	notPast := slices.Concat(asm.Instructions{
		asm.Mov.Reg(asm.R1, asm.R2),
		asm.Add.Imm(asm.R1, int32(size)),
		over(asm.JLE.Imm(asm.R1, tagStart, ""), covers),
	}, covers)
	past := asm.Instructions{asm.Sub.Imm(asm.R2, tagEnd-tagStart), over(asm.Ja.Label(""), notPast)}
	tagged := slices.Concat(asm.Instructions{over(asm.JLT.Imm(asm.R2, tagEnd, ""), past)}, past, notPast)
	t.out = append(t.out, over(asm.JEq.Imm32(regVLAN, 0, ""), tagged))
	t.out = append(t.out, tagged...)
	t.out = append(t.out, load...)
}

// loadPacket loads size bytes at packet offset R2 (from the MAC header)
// into A. For the tc filter, where the gap argument says the data starts
// after the MAC header, an offset past it is 14 bytes earlier in the
// data, one within it is read relative to it, and a load across its end
// is put together byte by byte.
func (t *translator) loadPacket(size int) asm.Instructions {
	data := t.loadIndirectData(size)
	if !t.target.tc {
		return data
	}
	across := t.bytewise(size, gapOff, gapBuf, func() asm.Instructions {
		after := append(asm.Instructions{asm.Sub.Imm(asm.R2, macLen)}, t.loadIndirectData(1)...)
		mac := append(t.loadMAC(regA, 1), over(asm.Ja.Label(""), after))
		return slices.Concat(asm.Instructions{over(asm.JGE.Imm(asm.R2, macLen, ""), mac)}, mac, after)
	})
	across = append(across, over(asm.Ja.Label(""), data))
	mac := append(t.loadMAC(regA, size), over(asm.Ja.Label(""), slices.Concat(across, data)))
	within := slices.Concat(asm.Instructions{
		asm.Mov.Reg(asm.R1, asm.R2),
		asm.Add.Imm(asm.R1, int32(size)),
		over(asm.JGT.Imm(asm.R1, macLen, ""), mac),
	}, mac, across)
	past := asm.Instructions{asm.Sub.Imm(asm.R2, macLen), over(asm.Ja.Label(""), within)}
	gapped := slices.Concat(asm.Instructions{over(asm.JLT.Imm(asm.R2, macLen, ""), past)}, past, within)
	return slices.Concat(asm.Instructions{
		asm.LoadMem(asm.R1, asm.RFP, gapSlot, asm.DWord),
		over(asm.JEq.Imm(asm.R1, 0, ""), gapped),
	}, gapped, data)
}

// bytewise puts together in A a load of size bytes at offset R2 from
// single bytes, each loaded by one(), which finds its offset in R2 and
// leaves the byte in A: offSlot keeps the offset across them, buf
// gathers them.
func (t *translator) bytewise(size int, offSlot, buf int16, one func() asm.Instructions) asm.Instructions {
	code := asm.Instructions{asm.StoreMem(asm.RFP, offSlot, asm.R2, asm.DWord)}
	for i := range size {
		code = append(code,
			asm.LoadMem(asm.R2, asm.RFP, offSlot, asm.DWord),
			asm.Add.Imm(asm.R2, int32(i)),
		)
		code = append(code, one()...)
		code = append(code, asm.StoreMem(asm.RFP, buf+int16(i), regA, asm.Byte))
	}
	code = append(code, asm.LoadMem(regA, asm.RFP, buf, sizeOf(size)))
	return append(code, toHost(regA, size)...)
}

// loadIndirectData loads size bytes at data offset R2 into A.
func (t *translator) loadIndirectData(size int) asm.Instructions {
	slow := t.loadBytes(regA, size)
	if !t.target.direct {
		return slow
	}
	// The offset in R2, bounded so that the verifier takes it as a
	// packet offset; the helper takes over past the first buffer.
	data, dataEnd := t.target.packetPointers()
	fast := asm.Instructions{
		asm.LoadMem(asm.R1, regCtx, data, asm.Word),
		asm.LoadMem(asm.R3, regCtx, dataEnd, asm.Word),
		asm.Add.Reg(asm.R1, asm.R2),
		asm.Mov.Reg(asm.R4, asm.R1),
		asm.Add.Imm(asm.R4, int32(size)),
	}
	load := append(asm.Instructions{asm.LoadMem(regA, asm.R1, 0, sizeOf(size))}, toHost(regA, size)...)
	load = append(load, over(asm.Ja.Label(""), slow))
	fast = append(fast, over(asm.JGT.Reg(asm.R4, asm.R3, ""), load))
	fast = append(fast, load...)
	return slices.Concat(asm.Instructions{over(asm.JGT.Imm(asm.R2, 0xffff-int32(size), ""), fast)}, fast, slow)
}

// loadBytes copies size bytes from packet offset R2 into dst, big
// endian, with the load-bytes helper, which reads across fragments and a
// socket buffer's paged part; an offset past the frame means no match.
func (t *translator) loadBytes(dst asm.Register, size int) asm.Instructions {
	helper := asm.FnXdpLoadBytes
	if t.target.tc {
		helper = asm.FnSkbLoadBytes
	}
	return append(asm.Instructions{
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
	}, toHost(dst, size)...)
}

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
		t.out = append(t.out, asm.Mov.Imm32(regA, 0))
		return nil
	}
	t.out = append(t.out, eop.Imm32(regA, int32(val)))
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
		t.out = append(t.out, asm.JEq.Imm32(regX, 0, t.exitNoMatch()), eop.Reg32(regA, regX))
	case isShift(op):
		// eBPF masks the shift count; classic BPF's shift by 32 or more
		// gives 0.
		zero := asm.Instructions{asm.Mov.Imm32(regA, 0)}
		shift := asm.Instructions{eop.Reg32(regA, regX), over(asm.Ja.Label(""), zero)}
		t.out = append(t.out, over(asm.JGE.Imm32(regX, 32, ""), shift))
		t.out = append(t.out, shift...)
		t.out = append(t.out, zero...)
	default:
		t.out = append(t.out, eop.Reg32(regA, regX))
	}
	return nil
}

// condJump emits a classic conditional jump: cmp builds the eBPF jump for
// an operation and a label.
func (t *translator) condJump(cond cbpf.JumpTest, cmp func(asm.JumpOp, string) asm.Instruction, skipTrue, skipFalse uint8) {
	onTrue, onFalse := t.next+int(skipTrue), t.next+int(skipFalse)
	var op asm.JumpOp
	switch cond {
	case cbpf.JumpEqual:
		op = asm.JEq
	case cbpf.JumpNotEqual:
		op = asm.JNE
	case cbpf.JumpGreaterThan:
		op = asm.JGT
	case cbpf.JumpLessThan:
		op = asm.JLT
	case cbpf.JumpGreaterOrEqual:
		op = asm.JGE
	case cbpf.JumpLessOrEqual:
		op = asm.JLE
	case cbpf.JumpBitsSet:
		op = asm.JSet
	case cbpf.JumpBitsNotSet:
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
	t.out = append(t.out, cmp(op, t.targetLabel(onTrue)))
	t.jump(onFalse)
}

// inverseJumps are the eBPF conditions whose negation eBPF has too.
var inverseJumps = map[asm.JumpOp]asm.JumpOp{
	asm.JEq: asm.JNE, asm.JNE: asm.JEq,
	asm.JGT: asm.JLE, asm.JLE: asm.JGT,
	asm.JGE: asm.JLT, asm.JLT: asm.JGE,
}

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

// maxProgramInsns is the most instructions the kernel loads in one
// program (BPF_COMPLEXITY_LIMIT_INSNS).
const maxProgramInsns = 1_000_000

// refused explains the kernel refusing the program with f in it. The
// program alone always loads: the expression is the cause, and its size
// the likely reason.
func (f *Filter) refused(err error) error {
	expr := shorten(f.Expr)
	size := fmt.Sprintf("%d classic BPF instructions, %d once translated", len(f.Classic), len(f.bodies[target{}]))
	var verr *ebpf.VerifierError
	switch {
	case errors.Is(err, unix.E2BIG):
		return fmt.Errorf("the filter expression %q is too large for the kernel (%s; at most %d in all)", expr, size, maxProgramInsns)
	case errors.As(err, &verr):
		return fmt.Errorf("the kernel's verifier refused the filter expression %q (%s): %s", expr, size, verifierReason(verr.Log))
	}
	return explain("load the program", err)
}

// verifierReason picks the verifier's reason from its log: the last line
// that is not its closing statistics.
func verifierReason(log []string) string {
	for i := len(log) - 1; i >= 0; i-- {
		line := strings.TrimSpace(log[i])
		if line != "" && !strings.HasPrefix(line, "processed ") && !strings.HasPrefix(line, "verification time") &&
			!strings.HasPrefix(line, "stack depth") {
			return line
		}
	}
	return "no reason given"
}
