package bpf

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	cbpf "golang.org/x/net/bpf"

	"github.com/ringcap/ringcap/bpf/bpftest"
)

// randomProgram is a classic BPF program of the kinds of instruction the
// translator takes, valid for x/net/bpf's VM: jumps forward within the
// program, a return last. (The VM knows no NegateA; the tcpdump tests
// cover it.)
func randomProgram(r *rand.Rand) []cbpf.Instruction {
	n := 2 + r.IntN(40)
	prog := make([]cbpf.Instruction, n)
	reg := func() cbpf.Register { return cbpf.Register(r.IntN(2)) }
	size := func() int { return []int{1, 2, 4}[r.IntN(3)] }
	// Mostly offsets within a short frame, some past any frame, some
	// near the ends of the first buffer and of a jumbo frame.
	off := func() uint32 {
		switch r.IntN(10) {
		case 0:
			return r.Uint32()
		case 1:
			return uint32(3500 + r.IntN(1200))
		case 2:
			return uint32(8990 + r.IntN(40))
		}
		return uint32(r.IntN(80))
	}
	val := func() uint32 {
		if r.IntN(4) == 0 {
			return r.Uint32()
		}
		return uint32(r.IntN(64))
	}
	ops := []cbpf.ALUOp{cbpf.ALUOpAdd, cbpf.ALUOpSub, cbpf.ALUOpMul, cbpf.ALUOpDiv, cbpf.ALUOpOr,
		cbpf.ALUOpAnd, cbpf.ALUOpShiftLeft, cbpf.ALUOpShiftRight, cbpf.ALUOpMod, cbpf.ALUOpXor}
	conds := []cbpf.JumpTest{cbpf.JumpEqual, cbpf.JumpNotEqual, cbpf.JumpGreaterThan, cbpf.JumpLessThan,
		cbpf.JumpGreaterOrEqual, cbpf.JumpLessOrEqual, cbpf.JumpBitsSet, cbpf.JumpBitsNotSet}
	for i := range n - 1 {
		// The furthest a jump from i may go lands on the last instruction.
		skip := func() uint8 { return uint8(r.IntN(min(n-2-i, 255) + 1)) }
		switch r.IntN(16) {
		case 0:
			prog[i] = cbpf.LoadAbsolute{Off: off(), Size: size()}
		case 1:
			prog[i] = cbpf.LoadIndirect{Off: off(), Size: size()}
		case 2:
			prog[i] = cbpf.LoadMemShift{Off: off()}
		case 3:
			prog[i] = cbpf.LoadConstant{Dst: reg(), Val: val()}
		case 4:
			prog[i] = cbpf.LoadScratch{Dst: reg(), N: r.IntN(16)}
		case 5:
			prog[i] = cbpf.StoreScratch{Src: reg(), N: r.IntN(16)}
		case 6:
			prog[i] = cbpf.LoadExtension{Num: cbpf.ExtLen}
		case 7:
			op := ops[r.IntN(len(ops))]
			v := val()
			if v == 0 && (op == cbpf.ALUOpDiv || op == cbpf.ALUOpMod) {
				v = 3
			}
			prog[i] = cbpf.ALUOpConstant{Op: op, Val: v}
		case 8:
			prog[i] = cbpf.ALUOpX{Op: ops[r.IntN(len(ops))]}
		case 9:
			prog[i] = cbpf.TAX{}
		case 10:
			prog[i] = cbpf.TXA{}
		case 11:
			prog[i] = cbpf.Jump{Skip: uint32(skip())}
		case 12, 13:
			prog[i] = cbpf.JumpIf{Cond: conds[r.IntN(len(conds))], Val: val(), SkipTrue: skip(), SkipFalse: skip()}
		case 14:
			prog[i] = cbpf.JumpIfX{Cond: conds[r.IntN(len(conds))], SkipTrue: skip(), SkipFalse: skip()}
		case 15:
			prog[i] = cbpf.RetConstant{Val: uint32(r.IntN(2))}
		}
	}
	if r.IntN(2) == 0 {
		prog[n-1] = cbpf.RetA{}
	} else {
		prog[n-1] = cbpf.RetConstant{Val: 65535}
	}
	return prog
}

// randomFrame is random bytes, mostly a short frame, sometimes one that
// fills the first buffer or spans several (jumbo).
func randomFrame(r *rand.Rand) []byte {
	n := 14 + r.IntN(120)
	switch r.IntN(6) {
	case 0:
		n = 3000 + r.IntN(2000)
	case 1:
		n = 8000 + r.IntN(1100)
	}
	b := make([]byte, n)
	for i := range b {
		// Small values, so that loads meet the random constants.
		b[i] = byte(r.IntN(4))
		if r.IntN(8) == 0 {
			b[i] = byte(r.Uint32())
		}
	}
	return b
}

// checkAgainstVM translates prog, loads it into the program and runs
// frames through both builds; every verdict must be the VM's.
func checkAgainstVM(t *testing.T, prog []cbpf.Instruction, frames [][]byte) {
	t.Helper()
	vm, err := cbpf.NewVM(prog)
	if err != nil {
		t.Fatalf("the generator made a program the VM refuses: %v\n%v", err, prog)
	}
	f, err := newFilter("random", prog)
	if err != nil {
		t.Fatalf("translate: %v\n%v", err, prog)
	}
	// Closed here, not with the test: thousands of programs freed at
	// once can wedge the kernel's deferred frees.
	objs := loadNow(t, Config{MTU: 1500, CaptureAll: true, SnapLen: 64, Filter: f})
	defer objs.Close()
	for _, build := range builds {
		prog, err := objs.Program(Instance{Build: build.build})
		if err != nil {
			t.Fatalf("load %s build: %v\n%v", build.name, err, prog)
		}
		for _, frame := range frames {
			if !build.takes(len(frame)) {
				continue
			}
			before := counters(t, objs).Selected
			run(t, prog, frame, 1)
			got := counters(t, objs).Selected > before
			ret, err := vm.Run(frame)
			if err != nil {
				t.Fatal(err)
			}
			if want := ret != 0; got != want {
				t.Fatalf("%s build: a %d-byte frame %s, the VM says %d\nprogram:\n%v",
					build.name, len(frame), map[bool]string{true: "matches", false: "does not match"}[got], ret, prog)
			}
		}
		drain(t, objs)
		prog.Close()
	}
}

// The translation agrees with golang.org/x/net/bpf's VM on random
// programs and random frames.
func TestTranslateAgreesWithVM(t *testing.T) {
	// Seconds in libpcap, the verifier and tcpdump, shared with no other
	// test: run beside the others.
	t.Parallel()
	bpftest.RequirePrivileges(t)
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		prog := randomProgram(r)
		var frames [][]byte
		for range 12 {
			frames = append(frames, randomFrame(r))
		}
		checkAgainstVM(t, prog, frames)
	}
}

// FuzzTranslate is TestTranslateAgreesWithVM with seeds from the fuzzer:
//
//	go test ./bpf -run XXX -fuzz FuzzTranslate -fuzztime 5m
func FuzzTranslate(f *testing.F) {
	bpftest.RequirePrivileges(f)
	f.Add(uint64(1), uint64(2))
	f.Fuzz(func(t *testing.T, a, b uint64) {
		r := rand.New(rand.NewPCG(a, b))
		prog := randomProgram(r)
		var frames [][]byte
		for range 12 {
			frames = append(frames, randomFrame(r))
		}
		checkAgainstVM(t, prog, frames)
	})
}

// The translation's view of a recorded frame that differs from the
// packet agrees with the VM run on the frame as recorded: a VLAN tag put
// back (the filter's vlan argument), a MAC header outside the data (tc's
// gap argument, see mac_gap in ringcap.c), and both. A tc test run's
// data starts at its MAC header, so with a gap the MAC header is read
// there twice: the recorded frame is data[:14] followed by data.
func TestTranslateTagAndGapAgreeWithVM(t *testing.T) {
	bpftest.RequirePrivileges(t)
	const tag = 0x8100<<16 | 0x2064 // 802.1Q, PCP 1, VLAN 100
	tagBytes := []byte{0x81, 0x00, 0x20, 0x64}
	r := rand.New(rand.NewPCG(3, 4))
	for range 100 {
		prog := randomProgram(r)
		vm, err := cbpf.NewVM(prog)
		if err != nil {
			t.Fatalf("the generator made a program the VM refuses: %v\n%v", err, prog)
		}
		var packets [][]byte
		for len(packets) < 12 {
			if f := randomFrame(r); len(f) <= 3000 {
				packets = append(packets, f)
			}
		}
		for _, c := range []struct {
			name     string
			tag, gap uint32
		}{{"tag", tag, 0}, {"gap", 0, macLen}, {"tag and gap", tag, macLen}} {
			body, err := translate(prog, target{tc: true, direct: true})
			if err != nil {
				t.Fatalf("translate: %v\n%v", err, prog)
			}
			// The filter's arguments, as capture() passes them: the
			// recorded length, the tag, the gap.
			extra := c.gap
			if c.tag != 0 {
				extra += 4
			}
			insns := append(asm.Instructions{
				asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // skb->len
				asm.Add.Imm(asm.R2, int32(extra)),
				asm.Mov.Imm32(asm.R3, int32(c.tag)),
				asm.Mov.Imm32(asm.R4, int32(c.gap)),
			}, body...)
			p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "MIT", Instructions: insns})
			if err != nil {
				t.Fatalf("%s: load: %v\n%v", c.name, err, prog)
			}
			for _, data := range packets {
				recorded := data
				if c.gap != 0 {
					recorded = slices.Concat(data[:macLen], data)
				}
				if c.tag != 0 {
					recorded = slices.Concat(recorded[:tagStart], tagBytes, recorded[tagStart:])
				}
				ret, err := p.Run(&ebpf.RunOptions{Data: data})
				if err != nil {
					t.Fatal(err)
				}
				want, err := vm.Run(recorded)
				if err != nil {
					t.Fatal(err)
				}
				if (ret != 0) != (want != 0) {
					t.Fatalf("%s: a %d-byte frame gives %d, the VM %d\nprogram:\n%v", c.name, len(recorded), ret, want, prog)
				}
			}
			p.Close()
		}
	}
}
