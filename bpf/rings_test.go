package bpf

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/bpf/frames"
)

// onCPU runs f on a thread of its own pinned to cpu, where a test run
// runs the program on that CPU.
func onCPU(cpu int, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with the goroutine, and its
		// affinity with it, instead of going back to the scheduler
		// pinned.
		runtime.LockOSThread()
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			errc <- fmt.Errorf("pin to CPU %d: %w", cpu, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// allowedCPUs are the CPUs the process may run on: those of the calling
// thread, which onCPU never pinned (a pinned thread ends with its
// goroutine; the main thread, which cannot end, is never used again).
func allowedCPUs(t *testing.T) []int {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	var cpus []int
	for cpu := 0; len(cpus) < set.Count(); cpu++ {
		if set.IsSet(cpu) {
			cpus = append(cpus, cpu)
		}
	}
	return cpus
}

// runOnCPU feeds frame to prog times times on cpu.
func runOnCPU(t *testing.T, cpu int, prog *ebpf.Program, frame []byte, times int) {
	t.Helper()
	if err := onCPU(cpu, func() error { return bpftest.RunTimes(prog, frame, times) }); err != nil {
		t.Fatalf("on CPU %d: %v", cpu, err)
	}
}

// drainRing is drain for the objects' ring i alone.
func drainRing(t *testing.T, objs *Objects, i int) []event {
	t.Helper()
	return drain(t, &Objects{Rings: objs.Rings[i : i+1]})
}

// recordCPUs is the CPU that wrote each record, in the ring's order.
func recordCPUs(evs []event) []int {
	cpus := make([]int, len(evs))
	for i, ev := range evs {
		cpus[i] = int(ev.Cpu)
	}
	return cpus
}

// checkCPUCounters checks selected = written + ring_full +
// reserve_failed on every CPU and in total, and returns the counters of
// each CPU.
func checkCPUCounters(t *testing.T, objs *Objects) []Counters {
	t.Helper()
	perCPU, err := objs.ReadCPUCounters(0)
	if err != nil {
		t.Fatal(err)
	}
	var sum Counters
	for cpu, c := range perCPU {
		if c.Selected != c.Written+c.Dropped() {
			t.Errorf("CPU %d: selected %d != written %d + ring full %d + reserve failed %d",
				cpu, c.Selected, c.Written, c.RingFull, c.ReserveFailed)
		}
		sum = sum.Add(c)
	}
	if sum.Selected != sum.Written+sum.Dropped() {
		t.Errorf("in total: selected %d != written %d + ring full %d + reserve failed %d",
			sum.Selected, sum.Written, sum.RingFull, sum.ReserveFailed)
	}
	return perCPU
}

// A frame run on CPU k goes into ring RingOf(k) while that has room: with
// one ring (Rings 0 or 1) every CPU's frames go into it, as before the
// rings were sharded; with a ring per CPU or more, each CPU has a ring of
// its own, and the rings past the CPUs stay empty.
func TestRingOfCPU(t *testing.T) {
	cpus := allowedCPUs(t)
	frame := frames.Spec{L3Len: 2000}.Build()
	const perCPU = 3
	ringCounts := []int{0, 1, 2, len(cpus), len(cpus) + 1}
	slices.Sort(ringCounts)
	for _, rings := range slices.Compact(ringCounts) {
		for _, build := range builds {
			t.Run(fmt.Sprintf("rings=%d/%s", rings, build.name), func(t *testing.T) {
				objs := load(t, Config{MTU: 1500, SnapLen: 256, Rings: rings})
				if want := max(rings, 1); len(objs.Rings) != want {
					t.Fatalf("%d rings, want %d", len(objs.Rings), want)
				}
				prog := build.prog(t, objs)
				want := make([][]int, len(objs.Rings)) // each ring's records' CPUs
				for _, cpu := range cpus {
					runOnCPU(t, cpu, prog, frame, perCPU)
					ring := objs.RingOf(cpu)
					for range perCPU {
						want[ring] = append(want[ring], cpu)
					}
				}
				if rings >= len(cpus) {
					for _, cpu := range cpus {
						if got := len(want[objs.RingOf(cpu)]); got != perCPU {
							t.Errorf("with %d rings for %d CPUs, CPU %d shares ring %d", rings, len(cpus), cpu, objs.RingOf(cpu))
						}
					}
				}
				for i := range objs.Rings {
					evs := drainRing(t, objs, i)
					if got := recordCPUs(evs); !slices.Equal(got, want[i]) {
						t.Errorf("ring %d holds records of CPUs %v, want %v", i, got, want[i])
					}
					for _, ev := range evs {
						checkEvent(t, ev, frame, 256)
					}
				}
				perCPUCounters := checkCPUCounters(t, objs)
				for _, cpu := range cpus {
					if got, want := perCPUCounters[cpu], (Counters{Seen: perCPU, Selected: perCPU, Written: perCPU}); got != want {
						t.Errorf("CPU %d: counters = %+v, want %+v", cpu, got, want)
					}
				}
			})
		}
	}
}

// spillStep runs frames on one of two CPUs, a or b, and gives that CPU's
// counters after it.
type spillStep struct {
	onB    bool
	frames uint64
	want   Counters
}

// spillCase is a ring layout, the steps run on it, and the writers of
// each ring's records, in order: false for CPU a, true for b.
type spillCase struct {
	name  string
	rings int
	steps []spillStep
	hold  [][]bool
}

// spillCases are the cases for rings that hold fits records, and fits
// below the spill limit (the last eighth of a ring is its own CPUs').
func spillCases(fits, spill uint64) []spillCase {
	n := func(written, full uint64) Counters {
		return Counters{Seen: written + full, Selected: written + full, Written: written, RingFull: full}
	}
	as := func(onB bool, count uint64) []bool { return slices.Repeat([]bool{onB}, int(count)) }
	return []spillCase{{
		// As before the rings were sharded: a fills the ring to its
		// size, and then neither CPU's frames find room.
		name:  "one ring",
		rings: 1,
		steps: []spillStep{
			{false, fits, n(fits, 0)},
			{false, 3, n(fits, 3)},
			{true, 2, n(0, 2)},
		},
		hold: [][]bool{as(false, fits)},
	}, {
		// a fills its own ring, then b's up to the spill limit; b
		// still fills its ring to the end, then finds a's full.
		name:  "two rings",
		rings: 2,
		steps: []spillStep{
			{false, fits, n(fits, 0)},
			{false, spill, n(fits+spill, 0)},
			{false, 3, n(fits+spill, 3)},
			{true, fits - spill + 2, n(fits-spill, 2)},
		},
		hold: [][]bool{as(false, fits), append(as(false, spill), as(true, fits-spill)...)},
	}}
}

// When a CPU's ring is full, its records go into another ring, up to
// that ring's spill limit, and only then count as ring_full; the last
// eighth of the other ring stays for its own CPU. Both kinds of record
// take that path: a frame that fills the snap length, reserved in the
// ring, and a shorter one, copied in.
func TestRingSpill(t *testing.T) {
	cpus := allowedCPUs(t)
	ringSize := uint32(os.Getpagesize())
	kinds := []struct {
		name  string
		cfg   Config
		frame []byte
	}{
		{"reserved", Config{MTU: 1500, SnapLen: 256, RingSize: ringSize}, frames.Spec{L3Len: 2000}.Build()},
		{"copied", Config{MTU: 1500, SnapLen: 256, RingSize: ringSize, CaptureAll: true}, frames.Spec{L3Len: 46}.Build()},
	}
	for _, kind := range kinds {
		// A record: the kernel's header, the event, the captured
		// bytes, rounded up to 8 bytes. A ring takes records while
		// they stay below its limit.
		record := (8 + uint64(EventHeaderSize) + uint64(min(len(kind.frame), 256)) + 7) &^ 7
		fits := (uint64(ringSize) - 1) / record
		spill := (uint64(ringSize) - uint64(ringSize)/8 - 1) / record
		for _, tt := range spillCases(fits, spill) {
			for _, build := range builds {
				t.Run(fmt.Sprintf("%s/%s/%s", kind.name, tt.name, build.name), func(t *testing.T) {
					cfg := kind.cfg
					cfg.Rings = tt.rings
					objs := load(t, cfg)
					a, b, ok := twoRings(objs, cpus)
					if !ok {
						t.Skipf("needs two CPUs of different rings; the process may run on %v", cpus)
					}
					prog := build.prog(t, objs)
					for i, step := range tt.steps {
						cpu := a
						if step.onB {
							cpu = b
						}
						runOnCPU(t, cpu, prog, kind.frame, int(step.frames))
						if got := checkCPUCounters(t, objs)[cpu]; got != step.want {
							t.Fatalf("step %d: CPU %d counters = %+v, want %+v", i+1, cpu, got, step.want)
						}
					}
					for i := range objs.Rings {
						evs := drainRing(t, objs, i)
						want := make([]int, len(tt.hold[i]))
						for j, onB := range tt.hold[i] {
							want[j] = a
							if onB {
								want[j] = b
							}
						}
						if got := recordCPUs(evs); !slices.Equal(got, want) {
							t.Errorf("ring %d holds records of CPUs %v, want %v", i, got, want)
						}
						for _, ev := range evs {
							checkEvent(t, ev, kind.frame, 256)
						}
					}
				})
			}
		}
	}
}

// twoRings picks two CPUs the process may run on: a, the first, and b,
// the first whose ring is another than a's; or the next one if there is
// a single ring.
func twoRings(objs *Objects, cpus []int) (a, b int, ok bool) {
	if len(cpus) < 2 {
		return 0, 0, false
	}
	a = cpus[0]
	for _, cpu := range cpus[1:] {
		if len(objs.Rings) == 1 || objs.RingOf(cpu) != objs.RingOf(a) {
			return a, cpu, true
		}
	}
	return 0, 0, false
}
