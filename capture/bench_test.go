package capture

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/bpf/frames"
	"github.com/ringcap/ringcap/capture/packet"
	"github.com/ringcap/ringcap/writer"
)

// BenchmarkRingToPcapng measures the reader and the writer on one core:
// records already in the ring, turned into pcapng bytes (thrown away).
// The program fills the ring between timed batches. Run it with
//
//	go test -run XXX -bench RingToPcapng -benchmem ./capture
func BenchmarkRingToPcapng(b *testing.B) {
	bpftest.InNewNetns(b)
	const snaplen, batch = 256, 100000
	c, err := Open(Config{Interfaces: []string{"lo"}, MTU: 1500, SnapLen: snaplen, RingSize: 64 << 20, Mode: ModeGeneric, Directions: In})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	w, err := writer.New(io.Discard, writer.Options{Interfaces: []writer.Interface{{Name: "lo", SnapLen: snaplen}}})
	if err != nil {
		b.Fatal(err)
	}
	frame := frames.Spec{L3Len: 2000}.Build()
	fill := func(n int) {
		if _, err := testProgram(b, c).Run(&ebpf.RunOptions{Data: frame, Repeat: uint32(n)}); err != nil {
			b.Fatal(err)
		}
	}
	// Warm up: buffers reach their steady size.
	fill(1000)
	if err := c.Run(context.Background(), w, 1000); err != nil {
		b.Fatal(err)
	}

	b.SetBytes(snaplen)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		b.StopTimer()
		fill(n)
		b.StartTimer()
		if err := c.Run(context.Background(), w, uint64(n)); err != nil {
			b.Fatal(err)
		}
		done += n
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkReaderMerge measures what Run does per record, reader.Next and
// decodeEvent, and with sink=pcapng the writer's Enhanced Packet Block
// too (what one reader merges and writes), for one reader merging rings whose
// records' timestamps interleave in runs: run=1, round robin, at every
// record another ring has the oldest head, the merge's worst case;
// run=64, runs of 64 records a ring, as a driver's poll hands the stack up
// to 64 frames of one queue (NAPI's budget) on one CPU. Alternately, batch by
// batch, it measures the same for one ring of the same total size
// (ringcap's --ring-size is the total): x-one-ring is the ratio. Between
// timed batches, test runs on another CPU fill the rings, as the programs
// do on the other CPUs: each batch either all the rings hold, a backlog
// that comes from memory, as after a burst, or 256KiB, a reader keeping
// up, which finds the records in the caches. Run it with
//
//	go test -run XXX -bench ReaderMerge ./capture
func BenchmarkReaderMerge(b *testing.B) {
	bpftest.RequirePrivileges(b)
	const ringSize = 1 << 20
	batches := []struct {
		name  string
		bytes int // 0: all the rings hold
	}{{"backlog", 0}, {"256KiB", 256 << 10}}
	fillCPU, readerCPU := benchCPUs(b)
	for _, rings := range []int{1, 2, 16, 64} {
		// Made once for all the runs of the sub-benchmarks: a
		// program per ring.
		merged := newBenchRings(b, rings, ringSize)
		one := newBenchRings(b, 1, rings*ringSize)
		for _, run := range []int{1, 64} {
			for _, bb := range batches {
				for _, sink := range []string{"none", "pcapng"} {
					if rings == 1 && run > 1 {
						continue // the same as run=1
					}
					name := fmt.Sprintf("rings=%d/run=%d/batch=%s/sink=%s", rings, run, bb.name, sink)
					b.Run(name, func(b *testing.B) {
						merged.w, one.w = nil, nil
						if sink == "pcapng" {
							merged.w, one.w = benchWriter(b), benchWriter(b)
						}
						defer pinGoroutine(b, readerCPU)()
						batch := merged.capacity(run)
						if bb.bytes > 0 {
							batch = min(batch, bb.bytes/merged.stored())
						}
						// The timer runs for both readers alike, and ns/op
						// is the merge's alone.
						var tMerged, tOne time.Duration
						b.StopTimer()
						b.ResetTimer()
						for done := 0; done < b.N; done += batch {
							n := min(batch, b.N-done)
							for _, m := range []struct {
								rings *benchRings
								took  *time.Duration
							}{{merged, &tMerged}, {one, &tOne}} {
								m.rings.fill(b, fillCPU, n, run)
								b.StartTimer()
								*m.took += m.rings.drain(b, n)
								b.StopTimer()
							}
						}
						b.ReportMetric(float64(tMerged.Nanoseconds())/float64(b.N), "ns/op")
						b.ReportMetric(float64(tOne.Nanoseconds())/float64(b.N), "one-ring-ns/op")
						b.ReportMetric(float64(tMerged)/float64(tOne), "x-one-ring")
					})
				}
			}
		}
		merged.close()
		one.close()
	}
}

// benchRings are rings, their reader, and a program per ring that writes
// events of ringcap's record size, with timestamps that interleave
// round robin across the rings.
type benchRings struct {
	maps    []*ebpf.Map
	state   *ebpf.Map // the writers', by ring: writerState
	writers []*ebpf.Program
	r       *reader
	frame   []byte         // an event, the writers' test run data
	w       *writer.Writer // if not nil, drain writes each event there
}

// benchWriter writes pcapng into nothing, as BenchmarkRingToPcapng does.
func benchWriter(b *testing.B) *writer.Writer {
	w, err := writer.New(io.Discard, writer.Options{Interfaces: []writer.Interface{{Name: "lo", SnapLen: benchSnapLen}}})
	if err != nil {
		b.Fatal(err)
	}
	return w
}

// benchSnapLen is ringcap's default snaplen.
const benchSnapLen = 256

func newBenchRings(b *testing.B, n, size int) *benchRings {
	b.Helper()
	br := &benchRings{frame: make([]byte, bpf.EventHeaderSize+benchSnapLen)}
	binary.NativeEndian.PutUint32(br.frame[bpf.EventCapLenOffset:], benchSnapLen)
	binary.NativeEndian.PutUint32(br.frame[bpf.EventFrameLenOffset:], 1500)
	fail := func(err error) {
		b.Helper()
		br.close()
		b.Fatal(err)
	}
	var err error
	br.state, err = ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: uint32(binary.Size(writerState{})), MaxEntries: uint32(n)})
	if err != nil {
		fail(err)
	}
	for i := range n {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: uint32(size)})
		if err != nil {
			fail(err)
		}
		br.maps = append(br.maps, m)
		p, err := eventWriter(m, br.state, uint32(i), len(br.frame))
		if err != nil {
			fail(err)
		}
		br.writers = append(br.writers, p)
	}
	if br.r, err = newReader(br.maps); err != nil {
		fail(err)
	}
	br.r.SetDeadline(time.Now().Add(-time.Second))
	return br
}

// writerState is an eventWriter's entry in the state map.
type writerState struct {
	Next, Left, Step uint64
}

// eventWriter is a program that writes records into ring m while its
// entry i of state, a writerState, counts on: each run copies the test
// run's data, an event, into a record, as ringcap's program does a frame,
// gives the record the timestamp Next, adds Step to it and counts Left
// down; once Left is zero it writes nothing.
// One test run, repeated, fills a ring, and a signal cannot make it write
// twice: the library runs an interrupted test run again, from the start.
//
// A tc program, not XDP: a repeated XDP test run swaps the kernel's XDP
// dispatcher twice, which waits for RCU, some 20ms a run.
func eventWriter(m, state *ebpf.Map, i uint32, size int) (*ebpf.Program, error) {
	const next, left, step = 0, 8, 16 // in writerState
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1), // the __sk_buff
		asm.StoreImm(asm.R10, -4, int64(i), asm.Word),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, state.FD()),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Reg(asm.R8, asm.R0),
		asm.LoadMem(asm.R1, asm.R8, left, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, "out"),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Imm(asm.R2, int32(size)),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnRingbufReserve.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.R7),
		asm.Mov.Imm(asm.R4, int32(size)),
		asm.FnSkbLoadBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "discard"),
		asm.LoadMem(asm.R1, asm.R8, next, asm.DWord),
		asm.StoreMem(asm.R7, int16(bpf.EventTsOffset), asm.R1, asm.DWord),
		asm.LoadMem(asm.R2, asm.R8, step, asm.DWord),
		asm.Add.Reg(asm.R1, asm.R2),
		asm.StoreMem(asm.R8, next, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R8, left, asm.DWord),
		asm.Sub.Imm(asm.R1, 1),
		asm.StoreMem(asm.R8, left, asm.R1, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRingbufSubmit.Call(),
		asm.Ja.Label("out"),
		asm.Mov.Reg(asm.R1, asm.R7).WithSymbol("discard"),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRingbufDiscard.Call(),
		asm.Mov.Imm(asm.R0, -1).WithSymbol("out"), // TC_ACT_UNSPEC
		asm.Return(),
	}
	return ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, Instructions: insns, License: "GPL"})
}

// stored is how many bytes of a ring a record takes.
func (br *benchRings) stored() int { return (ringHeaderSize + len(br.frame) + 7) &^ 7 }

// capacity is how many records the rings hold, filled in runs of run.
func (br *benchRings) capacity(run int) int {
	per := br.r.RingSize()/br.stored() - 1
	return per / run * run * len(br.maps)
}

// fill writes n records on the writer's CPU, in runs of run records a
// ring: record k goes to ring k/run mod rings, with the timestamp base+k.
// The base is quietWait before the fill, which is after the reader last
// saw the rings empty: as old as a program's record can be, for none to
// wait for quiet rings once the fill is over.
func (br *benchRings) fill(b *testing.B, on *pinnedWorker, n, run int) {
	rings := len(br.maps)
	base := monoNow() - uint64(quietWait)
	write := func(i int, st writerState) error {
		if err := br.state.Put(uint32(i), st); err != nil {
			return err
		}
		_, err := br.writers[i].Run(&ebpf.RunOptions{Data: br.frame, Repeat: uint32(st.Left)})
		return err
	}
	err := on.do(func() error {
		for i := range br.writers {
			count := 0
			if run == 1 {
				// One test run for the ring, its timestamps rings apart.
				count = max((n-i+rings-1)/rings, 0)
				if count > 0 {
					if err := write(i, writerState{base + uint64(i), uint64(count), uint64(rings)}); err != nil {
						return err
					}
				}
			}
			for k := i * run; run > 1 && k < n; k += rings * run {
				c := min(run, n-k)
				if err := write(i, writerState{base + uint64(k), uint64(c), 1}); err != nil {
					return err
				}
				count += c
			}
			if used := br.r.Used(i); used != count*br.stored() {
				return fmt.Errorf("ring %d holds %d bytes after a fill of %d records of %d", i, used, count, br.stored())
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	// Writing a record takes longer than the nanosecond between two
	// timestamps: this hardly ever waits.
	for monoNow() < base+uint64(n)+uint64(quietWait) {
		time.Sleep(time.Duration(base + uint64(n) + uint64(quietWait) - monoNow()))
	}
}

// drain reads n records as Run does, checks their order, gives the rings
// back and returns the time the reading took.
func (br *benchRings) drain(b *testing.B, n int) time.Duration {
	var last uint64
	start := time.Now()
	for range n {
		raw, err := br.r.Next()
		if err != nil {
			b.Fatal(err)
		}
		ev, err := decodeEvent(raw)
		if err != nil {
			b.Fatal(err)
		}
		if ev.tsNs <= last {
			b.Fatalf("record of %d after %d", ev.tsNs, last)
		}
		last = ev.tsNs
		if br.w != nil {
			err := br.w.WritePacket(packet.Packet{Time: time.Unix(0, int64(ev.tsNs)), Length: int(ev.frameLen), Data: ev.data})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	took := time.Since(start)
	br.r.Release()
	if used := br.r.UsedAll(); used != 0 {
		b.Fatalf("%d bytes left in the rings once read", used)
	}
	return took
}

func (br *benchRings) close() {
	if br.r != nil {
		br.r.Close()
	}
	for _, p := range br.writers {
		p.Close()
	}
	for _, m := range append(br.maps, br.state) {
		if m != nil {
			m.Close()
		}
	}
}

// pinnedWorker runs functions on a thread of its own, pinned to a CPU.
type pinnedWorker struct {
	work chan func() error
	errs chan error
}

// benchCPUs starts a worker on one CPU, for the programs' test runs, and
// returns another, for the reader: the records come to the reader from
// another CPU, as a capture's do, and the scheduler moves neither. With
// one CPU, both share it.
func benchCPUs(b *testing.B) (writer *pinnedWorker, reader int) {
	b.Helper()
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		b.Fatal(err)
	}
	var cpus []int
	for cpu := 0; cpu < 1024 && len(cpus) < 2; cpu++ {
		if allowed.IsSet(cpu) {
			cpus = append(cpus, cpu)
		}
	}
	w := &pinnedWorker{work: make(chan func() error), errs: make(chan error)}
	go func() {
		// Never unlocked: the thread, pinned, ends with the goroutine.
		runtime.LockOSThread()
		err := pinThread(cpus[len(cpus)-1])
		for f := range w.work {
			if err == nil {
				err = f()
			}
			w.errs <- err
		}
	}()
	b.Cleanup(func() { close(w.work) })
	return w, cpus[0]
}

func (w *pinnedWorker) do(f func() error) error {
	w.work <- f
	return <-w.errs
}

// pinThread pins the calling thread, which must be locked, to cpu.
func pinThread(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	return nil
}

// pinGoroutine keeps the calling goroutine on cpu until unpin.
func pinGoroutine(b *testing.B, cpu int) (unpin func()) {
	b.Helper()
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		b.Fatal(err)
	}
	runtime.LockOSThread()
	if err := pinThread(cpu); err != nil {
		runtime.UnlockOSThread()
		b.Fatal(err)
	}
	return func() {
		unix.SchedSetaffinity(0, &allowed)
		runtime.UnlockOSThread()
	}
}
