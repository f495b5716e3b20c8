package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf"
)

// Replay runs the program over the frames of a recorded capture, through
// BPF_PROG_TEST_RUN: what it hands to the sink is what a live capture with
// the same selection would have written, at the frames' recorded times.
// Each frame runs through the build of its direction's hook: inbound
// frames through the XDP build (the tc build with --hook tc), outbound
// ones through the tc build as tc egress sees them. Each recorded
// interface that holds frames counts into a slot of its own, which the
// test run's context names: a fixed handful of program instances replays
// any file, however many interfaces it holds.
type Replay struct {
	path   string
	ifaces []InputInterface
	// slots maps a recorded interface to its slot plus one, 0 for one
	// without frames; ifaceOf maps a slot back.
	slots   []int
	ifaceOf []int
	objs    *bpf.Objects
	hook    HookChoice
	runner  bpf.ReplayRunner

	first, now time.Time // recorded times: first frame, frame replayed last
	packets    atomic.Uint64

	// Frames that never reach the program.
	Short    uint64 // shorter than an Ethernet header: no driver passes them to XDP
	TooLarge uint64 // larger than a test run takes
}

// maxReplaySlots bounds the recorded interfaces with frames a replay
// counts apart: a slot's counters take 40 bytes a CPU.
const maxReplaySlots = 4096

// OpenReplay reads the whole input once, so that a broken file is refused
// before anything is written and every interface is known, then loads
// the program.
func OpenReplay(path string, cfg Config) (*Replay, error) {
	r := &Replay{path: path}
	n, err := r.scan()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("%s holds no frames", path)
	}
	if len(r.ifaceOf) > maxReplaySlots {
		return nil, fmt.Errorf("%s holds frames of %d interfaces, more than the %d a replay counts apart: split it by interface (tshark -r %s -w PART -Y 'frame.interface_id < %d', ...)",
			path, len(r.ifaceOf), maxReplaySlots, path, maxReplaySlots)
	}
	perfmon, err := checkPrivileges()
	if err != nil {
		return nil, err
	}
	if r.objs, err = cfg.load(len(r.ifaceOf), perfmon); err != nil {
		return nil, err
	}
	r.hook = cfg.Hook
	// Every instance a replay may need is loaded now, so that an
	// expression the kernel refuses stops the replay before any output.
	// The XDP build also replays frames too large for a tc test run, of
	// either direction.
	for _, inst := range []bpf.Instance{r.instance(Inbound), r.instance(Outbound),
		{Build: bpf.XDP, Replay: true}, {Build: bpf.XDP, Outbound: true, Replay: true}} {
		if _, err := r.objs.Program(inst); err != nil {
			r.objs.Close()
			return nil, err
		}
	}
	r.now = r.first
	return r, nil
}

// instance is the program instance that replays frames travelling in
// direction dir.
func (r *Replay) instance(dir Direction) bpf.Instance {
	build := bpf.XDP
	if dir == Outbound || r.hook == HookTC {
		build = bpf.TC
	}
	return bpf.Instance{Build: build, Outbound: dir == Outbound, Replay: true}
}

func (r *Replay) scan() (frames int, err error) {
	in, closer, err := OpenInput(r.path)
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	for ; ; frames++ {
		f, err := in.Next()
		if errors.Is(err, io.EOF) {
			r.ifaces = in.Interfaces()
			return frames, nil
		}
		if err != nil {
			return 0, fmt.Errorf("%s: frame %d: %w", r.path, frames+1, err)
		}
		if frames == 0 {
			r.first = f.Time
		}
		if f.Interface >= len(r.slots) {
			r.slots = slices.Grow(r.slots, f.Interface+1-len(r.slots))[:f.Interface+1]
		}
		if r.slots[f.Interface] == 0 {
			r.ifaceOf = append(r.ifaceOf, f.Interface)
			r.slots[f.Interface] = len(r.ifaceOf)
		}
	}
}

// Interfaces returns the recorded interfaces, in the file's order.
func (r *Replay) Interfaces() []InputInterface { return r.ifaces }

// Now returns the recorded time of the frame replayed last (of the first
// before any), in local time as a live capture's clock: the replay's clock,
// for the files' statistics, names and rotation.
func (r *Replay) Now() time.Time { return r.now.Local() }

// Packets returns how many frames were handed to the sink.
func (r *Replay) Packets() uint64 { return r.packets.Load() }

// Counters returns the program's counters per recorded interface.
func (r *Replay) Counters() ([]bpf.Counters, error) {
	bySlot, err := readCounters(r.objs, len(r.ifaceOf))
	if err != nil {
		return nil, err
	}
	out := make([]bpf.Counters, len(r.ifaces))
	for slot, c := range bySlot {
		out[r.ifaceOf[slot]] = c
	}
	return out, nil
}

// Close releases the program.
func (r *Replay) Close() error { return r.objs.Close() }

// maxTestRunFrame is about the largest frame BPF_PROG_TEST_RUN takes for
// an xdp.frags program: a page for the first buffer and up to
// MAX_SKB_FRAGS (17) pages of fragments, less head- and tailroom. Frames
// between this bound and the kernel's exact one fail with EINVAL and are
// counted the same way.
var (
	pageSize        = os.Getpagesize()
	maxTestRunFrame = 18*pageSize - 1024
)

// Run replays every frame until the end of the file or ctx is done.
func (r *Replay) Run(ctx context.Context, sink Sink) error {
	in, closer, err := OpenInput(r.path)
	if err != nil {
		return err
	}
	defer closer.Close()
	rd, err := newReader(r.objs.Rings)
	if err != nil {
		return fmt.Errorf("open rings: %w", err)
	}
	defer rd.Close()
	defer rd.Release()
	// Each test run is over before its records are read.
	rd.SetSettled(true)
	run := replayRun{r: r, rd: rd, sink: sink}
	if run.drops, err = newDropCounter(len(r.ifaceOf)); err != nil {
		return err
	}
	for n := 1; ctx.Err() == nil; n++ {
		f, err := in.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: frame %d: %w", r.path, n, err)
		}
		if err := run.replay(f, n); err != nil {
			return err
		}
	}
	return sink.Flush()
}

// replayRun is one Run's replay of the frames.
type replayRun struct {
	r     *Replay
	rd    *reader
	sink  Sink
	drops *dropCounter
	frame []byte // the frame the program runs on
}

// replay runs the program over recorded frame f, the file's n-th, and
// hands what it captured to the sink.
func (run *replayRun) replay(f Frame, n int) error {
	run.r.now = f.Time
	switch {
	case len(f.Data) < ethernetHdrLen:
		run.r.Short++
		return nil
	case f.Length > maxTestRunFrame:
		run.r.TooLarge++
		return nil
	}
	if f.Interface >= len(run.r.slots) || run.r.slots[f.Interface] == 0 {
		return fmt.Errorf("%s: frame %d: interface %d, which held no frames when ringcap first read the file: did it change?", run.r.path, n, f.Interface)
	}
	slot := run.r.slots[f.Interface] - 1
	// The program selects on the frame's length: give it the original
	// length, with zeros where the recording kept no bytes, and never
	// write those zeros out.
	run.frame = slices.Grow(run.frame[:0], f.Length)[:f.Length]
	clear(run.frame[copy(run.frame, f.Data):])
	if err := run.r.testRun(slot, f.Direction, run.frame); err != nil {
		if errors.Is(err, unix.EINVAL) && f.Length > pageSize {
			// A multi-buffer frame with more fragments than the
			// test run takes.
			run.r.TooLarge++
			return nil
		}
		return fmt.Errorf("%s: frame %d: test run: %w", run.r.path, n, err)
	}
	// The run is synchronous: its record, if any, is in the ring.
	if run.rd.UsedAll() == 0 {
		return nil
	}
	return run.writeRecords(f, slot)
}

// testRun runs frame through the program instance for frames travelling
// in dir, counting into slot.
func (r *Replay) testRun(slot int, dir Direction, frame []byte) error {
	inst := r.instance(dir)
	prog, err := r.objs.Program(inst)
	if err != nil {
		return err
	}
	_, err = r.runner.Run(prog, slot, frame)
	if errors.Is(err, unix.EINVAL) && inst.Build == bpf.TC && len(frame) > pageSize/2 {
		// A tc test run takes a frame of a page at most, less the
		// socket buffer's head- and tailroom: a larger one runs
		// through the XDP build, for the same direction.
		inst.Build = bpf.XDP
		if prog, err = r.objs.Program(inst); err != nil {
			return err
		}
		_, err = r.runner.Run(prog, slot, frame)
	}
	return err
}

// writeRecords hands the records a test run of recorded frame f left in the
// ring to the sink.
func (run *replayRun) writeRecords(f Frame, slot int) error {
	run.rd.SetDeadline(time.Now())
	for {
		raw, err := run.rd.Next()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read ring: %w", err)
		}
		ev, err := decodeEvent(raw)
		if err != nil {
			return err
		}
		p := ev.packet(f.Interface, f.Direction, f.Time, run.drops.since(slot, &ev))
		// No queue received a replayed frame: the event's is the test
		// run's. Past the bytes recorded, the program saw zeros.
		p.Queue, p.Data = 0, p.Data[:min(len(p.Data), len(f.Data))]
		if err := run.sink.WritePacket(p); err != nil {
			return err
		}
		run.r.packets.Add(1)
	}
}
