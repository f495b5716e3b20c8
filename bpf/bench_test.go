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
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/bpf/frames"
	"github.com/ringcap/ringcap/bpf/variants"
)

// benchRepeat is how many times one test run repeats the program; the
// kernel reports the mean time of a run.
const benchRepeat = 20000

// noopProgram is the baseline: a program of the build it is compared
// with that passes the frame on: XDP multi-buffer ("xdp.frags") or not,
// returning XDP_PASS, or tc, returning TCX_NEXT.
func noopProgram(b *testing.B, build Build) *ebpf.Program {
	spec := &ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		AttachType:   ebpf.AttachXDP,
		License:      "MIT",
		Instructions: asm.Instructions{asm.LoadImm(asm.R0, xdpPass, asm.DWord), asm.Return()},
	}
	switch build {
	case XDP:
		spec.Flags = unix.BPF_F_XDP_HAS_FRAGS
	case TC:
		spec.Type, spec.AttachType = ebpf.SchedCLS, ebpf.AttachNone
		spec.Instructions = asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()} // TCX_NEXT
	}
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { prog.Close() })
	return prog
}

// loadVariant loads one program of the variants object as build.
func loadVariant(b *testing.B, spec *ebpf.CollectionSpec, program string, build Build, cfg Config) (*Objects, *ebpf.Program) {
	cfg.Perfmon = true
	objs, err := loadSpec(spec, cfg)
	if err != nil {
		b.Fatal(err)
	}
	mapLoopback(b, objs)
	// The slot-hash variant finds loopback's inbound slot 0 in the hash.
	if err := objs.LargeIndexSlots.Put(uint32(loopbackIndex<<1), uint32(1)); err != nil {
		objs.Close()
		b.Fatal(err)
	}
	prog, err := objs.program(program, Instance{Build: build})
	if err != nil {
		objs.Close()
		b.Fatal(err)
	}
	return objs, prog
}

// BenchmarkProgram measures the cost of a frame in the program's two
// builds, and in the variants that undo one of its choices, as a ratio to
// the no-op program of the same build measured in the same iterations
// (x-noop). Run it with
//
//	go test -run XXX -bench Program ./bpf
func BenchmarkProgram(b *testing.B) {
	bpftest.RequirePrivileges(b)
	spec, err := variants.Spec()
	if err != nil {
		b.Fatal(err)
	}
	small := frames.Spec{L3Len: 46}.Build() // 60 bytes, never selected
	big := frames.Spec{L3Len: 2000}.Build() // selected
	// For the expression: a frame to another host, one to the host but
	// another port (the expression reads the TCP header, after the IP
	// header's length), and one that matches.
	const expr = "host 198.18.0.9 and tcp port 443"
	toPort := func(host byte, port layers.TCPPort) []byte { return tcpFrame(b, host, port) }
	filter, err := CompileFilter(expr)
	if err != nil {
		b.Fatal(err)
	}
	type selection struct {
		all    bool
		filter *Filter
	}
	withExpr := selection{filter: filter}
	allExpr := selection{all: true, filter: filter}
	tests := []struct {
		name    string
		program string
		build   Build
		frame   []byte
		ring    string // "drained": a reader empties it; "full": nobody does
		sel     selection
	}{
		{"not-selected-expression/ringcap", variants.Ringcap, XDP, small, "drained", withExpr},
		{"not-selected-expression/ringcap-linear", variants.RingcapLinear, XDPLinear, small, "drained", withExpr},
		{"all-expression-other-host/ringcap", variants.Ringcap, XDP, toPort(2, 443), "drained", allExpr},
		{"all-expression-other-host/ringcap-linear", variants.RingcapLinear, XDPLinear, toPort(2, 443), "drained", allExpr},
		{"all-expression-other-port/ringcap", variants.Ringcap, XDP, toPort(9, 80), "drained", allExpr},
		{"all-expression-other-port/ringcap-linear", variants.RingcapLinear, XDPLinear, toPort(9, 80), "drained", allExpr},
		{"all-expression-match/ringcap", variants.Ringcap, XDP, toPort(9, 443), "drained", allExpr},
		{"all-expression-match/ringcap-linear", variants.RingcapLinear, XDPLinear, toPort(9, 443), "drained", allExpr},
		{"not-selected/ringcap", variants.Ringcap, XDP, small, "drained", selection{}},
		{"not-selected/ringcap-linear", variants.RingcapLinear, XDPLinear, small, "drained", selection{}},
		{"not-selected/reserve-first", variants.ReserveFirst, XDP, small, "drained", selection{}},
		{"not-selected/slot-hash", variants.SlotHash, XDP, small, "drained", selection{}},
		{"not-selected/ringcap-tc", variants.RingcapTC, TC, small, "drained", selection{}},
		{"not-selected-expression/ringcap-tc", variants.RingcapTC, TC, small, "drained", withExpr},
		{"selected-drained/ringcap", variants.Ringcap, XDP, big, "drained", selection{}},
		{"selected-drained/ringcap-tc", variants.RingcapTC, TC, big, "drained", selection{}},
		{"selected-drained/ringcap-linear", variants.RingcapLinear, XDPLinear, big, "drained", selection{}},
		{"selected-drained/no-room-check", variants.NoRoomCheck, XDP, big, "drained", selection{}},
		{"selected-drained/record-snaplen", variants.RecordSnaplen, XDP, big, "drained", selection{}},
		{"selected-ring-full/ringcap", variants.Ringcap, XDP, big, "full", selection{}},
		{"selected-ring-full/no-room-check", variants.NoRoomCheck, XDP, big, "full", selection{}},
	}
	noops := map[Build]*ebpf.Program{XDP: noopProgram(b, XDP), XDPLinear: noopProgram(b, XDPLinear), TC: noopProgram(b, TC)}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			cfg := Config{MTU: 1500, SnapLen: 256, RingSize: 1 << 20, Slots: 1, CaptureAll: tt.sel.all, Filter: tt.sel.filter}
			objs, prog := loadVariant(b, spec, tt.program, tt.build, cfg)
			defer objs.Close()
			noop := noops[tt.build]
			if tt.ring == "full" {
				if _, err := prog.Run(&ebpf.RunOptions{Data: tt.frame, Repeat: 1 << 20 / 256}); err != nil {
					b.Fatal(err)
				}
			} else {
				stop := drainInBackground(b, objs.Rings[0])
				defer stop()
			}
			var subject, base time.Duration
			b.ResetTimer()
			for range b.N {
				_, d, err := prog.Benchmark(tt.frame, benchRepeat, nil)
				if err != nil {
					b.Fatal(err)
				}
				subject += d
				_, d, err = noop.Benchmark(tt.frame, benchRepeat, nil)
				if err != nil {
					b.Fatal(err)
				}
				base += d
			}
			b.ReportMetric(float64(subject.Nanoseconds())/float64(b.N), "ns/frame")
			b.ReportMetric(float64(base.Nanoseconds())/float64(b.N), "noop-ns/frame")
			b.ReportMetric(float64(subject)/float64(base), "x-noop")
			c, err := objs.ReadCounters(0)
			if err != nil {
				b.Fatal(err)
			}
			if tt.ring == "full" && c.Written > 1<<20/256 {
				b.Fatalf("the ring was meant to stay full, yet %d records were written", c.Written)
			}
		})
	}
}

// tcpFrame is a TCP SYN from 198.18.0.1 to 198.18.0.host, port port.
func tcpFrame(b *testing.B, host byte, port layers.TCPPort) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: []byte{198, 18, 0, 1}, DstIP: []byte{198, 18, 0, host}}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: port, SYN: true, Window: 65535}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	eth := &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

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

// benchmarkOnCPUs runs prog over frame benchRepeat times on each of CPUs
// 0 to cpus-1 at once, and returns the sum of the runs' durations.
func benchmarkOnCPUs(b *testing.B, prog *ebpf.Program, frame []byte, cpus int) time.Duration {
	return onCPUs(b, cpus, func() (time.Duration, error) {
		_, d, err := prog.Benchmark(frame, benchRepeat, nil)
		return d, err
	})
}

// onCPUs runs f at once on CPUs 0 to cpus-1 (onCPU), and returns the sum
// of the durations they report.
func onCPUs(b *testing.B, cpus int, f func() (time.Duration, error)) time.Duration {
	durations := make([]time.Duration, cpus)
	errs := make(chan error, cpus)
	for cpu := range cpus {
		go func() {
			errs <- onCPU(cpu, func() error {
				var err error
				durations[cpu], err = f()
				return err
			})
		}()
	}
	for range cpus {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	var total time.Duration
	for _, d := range durations {
		total += d
	}
	return total
}

// BenchmarkRecordSize compares the ways to size a ring record for whole
// frames (snap length 65535): the time a frame takes with a reader
// draining the ring, and the ring bytes it takes.
//
//	go test -run XXX -bench RecordSize ./bpf
func BenchmarkRecordSize(b *testing.B) {
	bpftest.RequirePrivileges(b)
	spec, err := variants.Spec()
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{MTU: 1500, CaptureAll: true, SnapLen: MaxSnapLen, RingSize: 64 << 20, Slots: 1}
	for _, size := range []int{60, 1514, 9014} {
		frame := frames.Spec{L3Len: size - 14}.Build()
		for _, program := range []string{variants.RecordSnaplen, variants.RecordClasses, variants.RecordDynptr, variants.RecordOutput} {
			b.Run(fmt.Sprintf("frame=%d/%s", size, program), func(b *testing.B) {
				objs, prog := loadVariant(b, spec, program, XDP, cfg)
				defer objs.Close()
				// Ring bytes a record takes: a few records into the empty
				// ring, nobody reading.
				const probe = 16
				if err := bpftest.RunTimes(prog, frame, probe); err != nil {
					b.Fatal(err)
				}
				rd, err := ringbuf.NewReader(objs.Rings[0])
				if err != nil {
					b.Fatal(err)
				}
				perRecord := float64(rd.AvailableBytes()) / probe
				readNow(b, rd, func([]byte) {})
				rd.Close()

				stop := drainInBackground(b, objs.Rings[0])
				defer stop()
				var total time.Duration
				b.ResetTimer()
				for range b.N {
					_, d, err := prog.Benchmark(frame, benchRepeat/10, nil)
					if err != nil {
						b.Fatal(err)
					}
					total += d
				}
				b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/frame")
				b.ReportMetric(perRecord, "ring-bytes/frame")
				c, err := objs.ReadCounters(0)
				if err != nil {
					b.Fatal(err)
				}
				if c.Written+probe < c.Selected/2 {
					b.Fatalf("%d of %d frames written: the reader did not keep the ring from filling", c.Written, c.Selected)
				}
			})
		}
	}
}
