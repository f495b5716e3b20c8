package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/bpf/frames"
)

// ringWriter is a program that reserves a record of size bytes (8 at
// least) in the ring, writes the frame's first eight bytes into its first
// and its last eight, and submits it, or discards it.
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
		asm.StoreMem(asm.R0, 0, asm.R4, asm.DWord).WithSymbol("store"),
		asm.StoreMem(asm.R0, int16(size-8), asm.R4, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.Mov.Imm(asm.R2, 0),
		end.Call(),
		asm.Ja.Label("out"),
		asm.Mov.Imm(asm.R4, 0).WithSymbol("short"),
		asm.Ja.Label("store"),
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

func newTestRing(t *testing.T, size uint32) (*ebpf.Map, *reader) {
	t.Helper()
	bpftest.RequirePrivileges(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: size})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	r, err := newReader([]*ebpf.Map{m})
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
			first, last := binary.NativeEndian.Uint64(raw), binary.NativeEndian.Uint64(raw[len(raw)-8:])
			if len(raw) < 16 {
				first = last // the two overlap
			}
			if first != read || last != read {
				t.Fatalf("round %d: record %d read as record %d to %d", round, read, first, last)
			}
		}
		if _, err := r.Next(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("round %d: Next on an empty ring after the deadline: %v", round, err)
		}
		if used := r.UsedAll(); used != 0 {
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

// A reader waiting on an empty ring has given back all it read, and wakes
// for a record submitted with the kernel's default wakeup, which wakes
// only a reader whose position is the record's.
func TestRingWakes(t *testing.T) {
	m, r := newTestRing(t, 4*4096)
	p := ringWriter(t, m, 24, false)
	r.SetDeadline(time.Now().Add(10 * time.Second))
	for i := range 20 {
		runWith(t, p, uint64(2*i))
		got := make(chan error, 1)
		go func() {
			for want := uint64(2 * i); want <= uint64(2*i+1); want++ {
				raw, err := r.Next()
				if err == nil && binary.NativeEndian.Uint64(raw) != want {
					err = fmt.Errorf("record %d read as %d", want, binary.NativeEndian.Uint64(raw))
				}
				if err != nil {
					got <- err
					return
				}
			}
			got <- nil
		}()
		// The reader reads the first record, then waits for the next.
		deadline := time.Now().Add(5 * time.Second)
		for r.UsedAll() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the reader waits with %d bytes read and not given back", i, r.UsedAll())
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(10 * time.Millisecond)
		runWith(t, p, uint64(2*i+1))
		if err := <-got; err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
}

// ringcap's program leaves the reader's epoll alone until the ring fills
// to the wakeup level, wakes it there, and again once the reader has read
// all and the ring fills again.
func TestProgramWakesReader(t *testing.T) {
	bpftest.InNewNetns(t)
	const ringSize, snaplen = 64 << 10, 128
	c, err := Open(Config{Interfaces: []string{"lo"}, MTU: 1500, SnapLen: snaplen, RingSize: ringSize, Mode: ModeGeneric, Directions: In})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	prog := testProgram(t, c)
	frame := frames.Spec{L3Len: 3000}.Build()
	record := (8 + bpf.EventHeaderSize + snaplen + 7) &^ 7
	below := ringSize/4/record - 1 // the quarter of the ring is the wakeup level
	r := c.rings
	for round := range 3 {
		// An epoll of the test's own: it reports the map only once
		// the program wakes its waiters, as the reader's does while
		// it waits (added to an empty ring, the map is not ready).
		ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(ep)
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(c.objs.Rings[0].FD())}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, c.objs.Rings[0].FD(), &ev); err != nil {
			t.Fatal(err)
		}
		events := make([]unix.EpollEvent, 1)
		if err := bpftest.RunTimes(prog, frame, below); err != nil {
			t.Fatal(err)
		}
		if n, err := unix.EpollWait(ep, events, 0); n != 0 || err != nil {
			t.Fatalf("round %d: woken below the wakeup level: %d, %v", round, n, err)
		}
		// The record that takes the ring to the level wakes it.
		if err := bpftest.RunTimes(prog, frame, 2); err != nil {
			t.Fatal(err)
		}
		if n, err := unix.EpollWait(ep, events, 5000); n != 1 || err != nil {
			t.Fatalf("round %d: not woken at the wakeup level: %d, %v", round, n, err)
		}
		// Above it, a record wakes it only across a boundary: every
		// 2 KiB here (an eighth of the level, 16 KiB).
		fill, sent := (below+2)*record, below+2
		for ; fill+record < ringSize; fill += record {
			want := fill>>11 != (fill+record)>>11
			if err := bpftest.RunTimes(prog, frame, 1); err != nil {
				t.Fatal(err)
			}
			sent++
			wait := 0
			if want {
				wait = 5000
			}
			if n, err := unix.EpollWait(ep, events, wait); (n == 1) != want || err != nil {
				t.Fatalf("round %d: fill %d to %d: woken %v, want %v (%v)", round, fill, fill+record, n == 1, want, err)
			}
		}
		r.SetDeadline(time.Now())
		n := 0
		for {
			if _, err := r.Next(); err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatal(err)
				}
				break
			}
			n++
		}
		if n != sent {
			t.Fatalf("round %d: read %d records, want %d", round, n, sent)
		}
	}
}
