package bpf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/bpf/frames"
	"github.com/ringcap/ringcap/bpf/variants"
)

// drainInBackground reads the ring until stop is called.
func drainInBackground(b *testing.B, events *ebpf.Map) (stop func()) {
	rd, err := ringbuf.NewReader(events)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var rec ringbuf.Record
		for ctx.Err() == nil {
			rd.ReadInto(&rec)
		}
	}()
	return func() {
		cancel()
		rd.Close()
		<-done
	}
}

// spillTries is SPILL_TRIES in ringcap.c: the other rings a CPU tries
// when its own is full.
const spillTries = 2

// BenchmarkReserveLock measures a selected frame when every ring is full,
// so that nothing else (a reader, the copy) takes time: on one CPU, then
// on every CPU at once. ringcap's program skips the reserve then, after
// the free-space test of its own ring and, with more rings than one, of
// up to spillTries others; the variant without the free-space test takes
// the ring's lock, and fails, for every frame. Each row is run alternately
// with ringcap's program with one ring, in the same iterations
// (one-ring-ns/frame, x-one-ring). The programs are loaded once for all
// rows: the rings stay full, since nobody reads them.
//
//	go test -run XXX -bench ReserveLock ./bpf
func BenchmarkReserveLock(b *testing.B) {
	bpftest.RequirePrivileges(b)
	spec, err := variants.Spec()
	if err != nil {
		b.Fatal(err)
	}
	big := frames.Spec{L3Len: 2000}.Build()
	ncpu := runtime.NumCPU()
	full := func(program string, rings int) *ringWriter {
		cfg := Config{MTU: 1500, SnapLen: 256, RingSize: uint32(os.Getpagesize()), Slots: 1, Rings: rings}
		w := loadRingWriter(b, spec, program, cfg)
		w.fill(b, big, ncpu)
		return w
	}
	oneRing := full(variants.Ringcap, 1)
	rows := []benchRow{
		{"ringcap_xdp/rings=1", oneRing, nil},
		{"no_room_check/rings=1", full(variants.NoRoomCheck, 1), oneRing},
	}
	// A ring per CPU; and, where that leaves a CPU fewer than spillTries
	// other rings, enough rings for a frame to try as many as it may.
	ringCounts := []int{ncpu}
	if ncpu < spillTries+1 {
		ringCounts = append(ringCounts, spillTries+1)
	}
	for _, rings := range ringCounts {
		if rings > 1 {
			rows = append(rows, benchRow{fmt.Sprintf("ringcap_xdp/rings=%d", rings), full(variants.Ringcap, rings), oneRing})
		}
	}
	for _, row := range rows {
		for _, cpus := range []int{1, ncpu} {
			b.Run(fmt.Sprintf("%s/cpus=%d", row.name, cpus), func(b *testing.B) {
				var subject, base time.Duration
				b.ResetTimer()
				for range b.N {
					subject += benchmarkOnCPUs(b, row.w.prog, big, cpus)
					if row.baseline != nil {
						base += benchmarkOnCPUs(b, row.baseline.prog, big, cpus)
					}
				}
				b.ReportMetric(float64(subject.Nanoseconds())/float64(b.N*cpus), "ns/frame")
				if row.baseline != nil {
					b.ReportMetric(float64(base.Nanoseconds())/float64(b.N*cpus), "one-ring-ns/frame")
					b.ReportMetric(float64(subject)/float64(base), "x-one-ring")
					row.baseline.checkStayedFull(b)
				}
				row.w.checkStayedFull(b)
			})
		}
	}
}

// benchRow is a sub-benchmark's program, and the one it is measured
// against in the same iterations, if any.
type benchRow struct {
	name     string
	w        *ringWriter
	baseline *ringWriter
}

// BenchmarkRingPerCPU measures what sharding the ring is worth, and what
// it costs: a selected frame written into a ring with room, by ringcap's
// program with one ring and with a ring per CPU, and by shared_ring,
// ringcap's program before the rings were sharded (one RINGBUF for every
// CPU, referenced directly). Each row runs, alternately in the same
// iterations, its program on one CPU (ns/frame) and on every CPU at once
// (all-cpus-ns/frame, per CPU), and shared_ring on one CPU
// (today-ns/frame):
//
//	x-one-cpu  all-cpus-ns/frame / ns/frame: what writing from every
//	           CPU at once costs a frame
//	x-today    ns/frame / today-ns/frame: what finding the ring costs
//
// The rings are emptied between timed runs, so that no reader competes
// for the CPUs, and are large enough that no run fills them a quarter,
// where the program starts to wake the reader. The programs are loaded
// once for all rows.
//
//	go test -run XXX -bench RingPerCPU ./bpf
func BenchmarkRingPerCPU(b *testing.B) {
	bpftest.RequirePrivileges(b)
	spec, err := variants.Spec()
	if err != nil {
		b.Fatal(err)
	}
	ncpu := runtime.NumCPU()
	// A quarter of a ring holds every record of a timed run, even the
	// shared ring's from every CPU.
	cfg := Config{MTU: 1500, SnapLen: 256, Slots: 1}
	cfg.RingSize = uint32(nextPowerOfTwo(uint64(4 * ncpu * benchRepeat * int(cfg.RecordSize()))))
	big := frames.Spec{L3Len: 2000}.Build()
	withRings := func(rings int) Config {
		c := cfg
		c.Rings = rings
		return c
	}
	today := loadRingWriter(b, spec, variants.SharedRing, cfg)
	rows := []benchRow{
		{"ringcap_xdp/rings=1", loadRingWriter(b, spec, variants.Ringcap, withRings(1)), today},
		{fmt.Sprintf("ringcap_xdp/rings=%d", ncpu), loadRingWriter(b, spec, variants.Ringcap, withRings(ncpu)), today},
		{"shared_ring", today, nil},
	}
	for _, row := range rows {
		b.Run(row.name, func(b *testing.B) {
			var one, all, base time.Duration
			b.ResetTimer()
			for range b.N {
				one += row.w.run(b, big, 1)
				all += row.w.run(b, big, ncpu)
				if row.baseline != nil {
					base += row.baseline.run(b, big, 1)
				}
			}
			b.ReportMetric(float64(one.Nanoseconds())/float64(b.N), "ns/frame")
			b.ReportMetric(float64(all.Nanoseconds())/float64(b.N*ncpu), "all-cpus-ns/frame")
			b.ReportMetric(float64(all)/float64(ncpu)/float64(one), "x-one-cpu")
			if row.baseline != nil {
				b.ReportMetric(float64(base.Nanoseconds())/float64(b.N), "today-ns/frame")
				b.ReportMetric(float64(one)/float64(base), "x-today")
				row.baseline.checkAllWritten(b)
			}
			row.w.checkAllWritten(b)
		})
	}
}

// ringWriter is a program loaded from the variants object, with its maps
// and readers of the rings it writes into.
type ringWriter struct {
	objs    *Objects
	prog    *ebpf.Program
	readers []*ringbuf.Reader
	written uint64 // records written when fill filled the rings
}

// loadRingWriter loads program with cfg, closed when b ends. SharedRing
// writes into a ring outside the Objects, as large as theirs.
func loadRingWriter(b *testing.B, spec *ebpf.CollectionSpec, program string, cfg Config) *ringWriter {
	if program == variants.SharedRing {
		spec = spec.Copy()
		spec.Maps[variants.SharedRingMap].MaxEntries = cfg.RingSize
	}
	objs, prog := loadVariant(b, spec, program, XDP, cfg)
	w := &ringWriter{objs: objs, prog: prog}
	b.Cleanup(w.close)
	rings := objs.Rings
	if program == variants.SharedRing {
		ring, err := programRing(prog)
		if err != nil {
			b.Fatal(err)
		}
		defer ring.Close() // the reader holds a handle of its own
		rings = []*ebpf.Map{ring}
	}
	for _, ring := range rings {
		rd, err := ringbuf.NewReader(ring)
		if err != nil {
			b.Fatal(err)
		}
		w.readers = append(w.readers, rd)
	}
	return w
}

// programRing opens the ring buffer prog writes into, found among the
// maps it uses; the caller closes it.
func programRing(prog *ebpf.Program) (*ebpf.Map, error) {
	info, err := prog.Info()
	if err != nil {
		return nil, fmt.Errorf("program info: %w", err)
	}
	ids, ok := info.MapIDs()
	if !ok {
		return nil, errors.New("the kernel does not name the program's maps")
	}
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			return nil, fmt.Errorf("open map %d: %w", id, err)
		}
		if m.Type() == ebpf.RingBuf {
			return m, nil
		}
		m.Close()
	}
	return nil, errors.New("the program uses no ring buffer")
}

func (w *ringWriter) close() {
	for _, rd := range w.readers {
		rd.Close()
	}
	w.objs.Close()
}

// run times the program over frame on CPUs 0 to cpus-1 at once, as
// benchmarkOnCPUs, then empties the rings with b's timer stopped.
func (w *ringWriter) run(b *testing.B, frame []byte, cpus int) time.Duration {
	d := benchmarkOnCPUs(b, w.prog, frame, cpus)
	b.StopTimer()
	for _, rd := range w.readers {
		readNow(b, rd, func([]byte) {})
	}
	b.StartTimer()
	return d
}

// checkAllWritten fails b unless every frame the program selected so
// far was written.
func (w *ringWriter) checkAllWritten(b *testing.B) {
	c, err := w.objs.ReadCounters(0)
	if err != nil {
		b.Fatal(err)
	}
	if c.Written != c.Selected {
		b.Fatalf("%d of %d selected frames written: the rings were meant to have room", c.Written, c.Selected)
	}
}

// fill fills, for good, every ring that CPUs 0 to cpus-1 write into:
// each writes frame until its own ring and those it spills into are full.
func (w *ringWriter) fill(b *testing.B, frame []byte, cpus int) {
	cfg := w.objs.cfg
	records := cfg.rings() * int(cfg.RingSize/cfg.RecordSize())
	onCPUs(b, cpus, func() (time.Duration, error) {
		// More than all the rings hold; a run a signal restarts only
		// adds frames.
		_, err := w.prog.Run(&ebpf.RunOptions{Data: frame, Repeat: uint32(2*records + 10)})
		return 0, err
	})
	c, err := w.objs.ReadCounters(0)
	if err != nil {
		b.Fatal(err)
	}
	if c.RingFull+c.ReserveFailed == 0 {
		b.Fatalf("the rings took all %d frames: they were meant to fill", c.Selected)
	}
	w.written = c.Written
}

// checkStayedFull fails b if a record was written since fill.
func (w *ringWriter) checkStayedFull(b *testing.B) {
	c, err := w.objs.ReadCounters(0)
	if err != nil {
		b.Fatal(err)
	}
	if c.Written != w.written {
		b.Fatalf("%d records written while the rings were meant to stay full", c.Written-w.written)
	}
}

// BenchmarkLoadRings measures what the rings cost ringcap's start: Load
// with 1 to 64 rings (of 64KiB, to keep the memory small), per Load
// (ms/load), and, timed apart in the same iterations by putting every
// ring in its place once more, per update of the ring table (ms/update)
// and for one batch update of all the rings (ms/batch). The table is a
// map of maps: each update of one from user space waits for an RCU grace
// period, so that no program runs with the old ring when it returns.
// Before Linux 6.8 a lookup waited too, and a batch update once per
// element; since, a batch update waits once.
// Load creates maps only, no program.
//
//	go test -run XXX -bench LoadRings ./bpf
func BenchmarkLoadRings(b *testing.B) {
	bpftest.RequirePrivileges(b)
	for _, rings := range []int{1, 2, 16, 64} {
		b.Run(fmt.Sprintf("rings=%d", rings), func(b *testing.B) {
			cfg := Config{MTU: 1500, SnapLen: 256, RingSize: 64 << 10, Slots: 1, Rings: rings}
			var load, update, batch time.Duration
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				objs, err := Load(cfg)
				if err != nil {
					b.Fatal(err)
				}
				load += time.Since(start)
				d, err := timeRingTableUpdates(objs)
				if err != nil {
					objs.Close()
					b.Fatal(err)
				}
				update += d
				d, err = timeRingTableBatch(objs)
				if err != nil {
					objs.Close()
					b.Fatal(err)
				}
				batch += d
				b.StopTimer()
				objs.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(load.Nanoseconds())/1e6/float64(b.N), "ms/load")
			b.ReportMetric(float64(update.Nanoseconds())/1e6/float64(b.N*rings), "ms/update")
			b.ReportMetric(float64(batch.Nanoseconds())/1e6/float64(b.N), "ms/batch")
		})
	}
}

// timeRingTableUpdates puts every ring in its place in the ring table
// again, one update each, and returns the time it took.
func timeRingTableUpdates(objs *Objects) (time.Duration, error) {
	start := time.Now()
	for i, ring := range objs.Rings {
		if err := objs.RingTable.Put(uint32(i), ring); err != nil {
			return 0, fmt.Errorf("put ring %d: %w", i, err)
		}
	}
	return time.Since(start), nil
}

// timeRingTableBatch puts every ring in its place in the ring table
// again, in one batch update, and returns the time it took.
func timeRingTableBatch(objs *Objects) (time.Duration, error) {
	keys := make([]uint32, len(objs.Rings))
	fds := make([]uint32, len(objs.Rings))
	for i, ring := range objs.Rings {
		keys[i], fds[i] = uint32(i), uint32(ring.FD())
	}
	start := time.Now()
	if _, err := objs.RingTable.BatchUpdate(keys, fds, nil); err != nil {
		return 0, fmt.Errorf("batch update of %d rings: %w", len(keys), err)
	}
	return time.Since(start), nil
}
