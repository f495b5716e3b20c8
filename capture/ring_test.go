package capture

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/ringcap/ringcap/bpf/bpftest"
)

// ringWriter is a program that reserves a record of size bytes in the
// ring, writes its first eight bytes from the frame's first eight, and
// submits it, or discards it.
func ringWriter(t *testing.T, m *ebpf.Map, size int32, discard bool) *ebpf.Program {
	t.Helper()
	end := asm.FnRingbufSubmit
	if discard {
		end = asm.FnRingbufDiscard
	}
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1), // the xdp_md
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Imm(asm.R2, size),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnRingbufReserve.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.LoadMem(asm.R2, asm.R6, 0, asm.Word), // data
		asm.LoadMem(asm.R3, asm.R6, 4, asm.Word), // data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 8),
		asm.JGT.Reg(asm.R4, asm.R3, "short"),
		asm.LoadMem(asm.R4, asm.R2, 0, asm.DWord),
		asm.StoreMem(asm.R0, 0, asm.R4, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R0).WithSymbol("commit"),
		asm.Mov.Imm(asm.R2, 0),
		end.Call(),
		asm.Ja.Label("out"),
		asm.Mov.Imm(asm.R4, 0).WithSymbol("short"),
		asm.StoreMem(asm.R0, 0, asm.R4, asm.DWord),
		asm.Ja.Label("commit"),
		asm.Mov.Imm(asm.R0, 2).WithSymbol("out"), // XDP_PASS
		asm.Return(),
	}
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, Instructions: insns, License: "GPL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func newTestRing(t *testing.T, size uint32) (*ebpf.Map, *ring) {
	t.Helper()
	bpftest.RequirePrivileges(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: size})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	r, err := newRing(m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return m, r
}

func runWith(t *testing.T, p *ebpf.Program, seq uint64) {
	t.Helper()
	frame := make([]byte, 64)
	binary.NativeEndian.PutUint64(frame, seq)
	if _, err := p.Run(&ebpf.RunOptions{Data: frame}); err != nil {
		t.Fatal(err)
	}
}

// Records of every padding come out whole and in order, discarded ones
// never, while the ring wraps around hundreds of times: the reader gives
// the space back, and a record across the end is read whole.
func TestRingReadsInOrder(t *testing.T) {
	const size = 4 * 4096
	m, r := newTestRing(t, size)
	sizes := []int32{8, 9, 15, 60, 333, 1000, 4000}
	var progs, discards []*ebpf.Program
	for _, s := range sizes {
		progs = append(progs, ringWriter(t, m, s, false))
		discards = append(discards, ringWriter(t, m, s, true))
	}
	r.SetDeadline(time.Now().Add(-time.Second))
	seq, read, bytes := uint64(0), uint64(0), 0
	for round := range 2000 {
		// A few records, some discarded in between, then read them.
		var want []int32
		for i := range 3 {
			k := (round + i) % len(sizes)
			if (round+i)%4 == 0 {
				runWith(t, discards[k], 0)
			}
			seq++
			runWith(t, progs[k], seq)
			want = append(want, sizes[k])
			bytes += ringHeaderSize + (int(sizes[k])+7)&^7
		}
		for _, s := range want {
			raw, err := r.Next()
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			read++
			if len(raw) != int(s) {
				t.Fatalf("round %d: record of %d bytes, want %d", round, len(raw), s)
			}
			if got := binary.NativeEndian.Uint64(raw); got != read {
				t.Fatalf("round %d: record %d read as record %d", round, read, got)
			}
		}
		if _, err := r.Next(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("round %d: Next on an empty ring after the deadline: %v", round, err)
		}
		if used := r.Used(); used != 0 {
			t.Fatalf("round %d: %d bytes of the ring not given back once read", round, used)
		}
	}
	if bytes < 100*size {
		t.Fatalf("%d bytes through a ring of %d: too few to wrap it often", bytes, size)
	}
}

// A Flush wakes a reader that waits with no deadline, and Next returns the
// records already in the ring first.
func TestRingFlush(t *testing.T) {
	m, r := newTestRing(t, 4*4096)
	p := ringWriter(t, m, 16, false)
	r.SetDeadline(time.Time{})
	got := make(chan error, 1)
	go func() {
		_, err := r.Next()
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, errFlushed) {
			t.Fatalf("Next after Flush: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Flush did not wake the reader")
	}

	for i := range 3 {
		runWith(t, p, uint64(i+1))
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		raw, err := r.Next()
		if err != nil || binary.NativeEndian.Uint64(raw) != uint64(i+1) {
			t.Fatalf("record %d after Flush: %x, %v", i+1, raw, err)
		}
	}
	if _, err := r.Next(); !errors.Is(err, errFlushed) {
		t.Fatalf("Next once the records are read: %v", err)
	}
}

// A reader waiting on an empty ring wakes for a record submitted with the
// kernel's default wakeup, which it only gets if the reader gave back all
// it read before it waited.
func TestRingWakes(t *testing.T) {
	m, r := newTestRing(t, 4*4096)
	p := ringWriter(t, m, 24, false)
	r.SetDeadline(time.Now().Add(10 * time.Second))
	for i := range 50 {
		go func() {
			time.Sleep(time.Millisecond)
			frame := make([]byte, 64)
			binary.NativeEndian.PutUint64(frame, uint64(i))
			p.Run(&ebpf.RunOptions{Data: frame})
		}()
		start := time.Now()
		raw, err := r.Next()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if got := binary.NativeEndian.Uint64(raw); got != uint64(i) {
			t.Fatalf("record %d read as %d", i, got)
		}
		if waited := time.Since(start); waited > 5*time.Second {
			t.Fatalf("record %d: woken after %v", i, waited)
		}
	}
}
