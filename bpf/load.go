package bpf

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The layout of struct event in ringcap.c, the fixed header in front of
// the frame bytes of every ring record, as bpf2go read it from the
// object's BTF: decoders use these instead of offsets of their own.
const (
	EventHeaderSize     = int(unsafe.Sizeof(ringcapEvent{}))
	EventTsOffset       = int(unsafe.Offsetof(ringcapEvent{}.TsNs))
	EventIfindexOffset  = int(unsafe.Offsetof(ringcapEvent{}.Ifindex))
	EventRxQueueOffset  = int(unsafe.Offsetof(ringcapEvent{}.RxQueue))
	EventFrameLenOffset = int(unsafe.Offsetof(ringcapEvent{}.FrameLen))
	EventCapLenOffset   = int(unsafe.Offsetof(ringcapEvent{}.CapLen))
	EventDropsOffset    = int(unsafe.Offsetof(ringcapEvent{}.Drops))
	EventCPUOffset      = int(unsafe.Offsetof(ringcapEvent{}.Cpu))
)

// ringRecordHeaderSize is BPF_RINGBUF_HDR_SZ, the kernel's header in front
// of every ring record.
const ringRecordHeaderSize = 8

// Limits of the selection, checked before the program is loaded so that the
// user gets a sentence instead of EINVAL.
const (
	// MaxSnapLen is the largest frame an interface hands to XDP: Linux's
	// largest MTU (65535) with an Ethernet header and two VLAN tags.
	// Records hold the captured bytes only, so a snap length this large
	// costs nothing for small frames.
	MaxSnapLen  = 65535 + 14 + 2*4
	MaxRingSize = 1 << 31 // largest power of two the kernel's ringbuf accepts
)

// Config is the selection and ring layout baked into the program at load.
type Config struct {
	MTU        uint32 // frames whose L3 length exceeds MTU are selected
	CaptureAll bool   // select every frame
	SnapLen    uint32 // bytes of each selected frame copied into the ring
	RingSize   uint32 // bytes; a power of two and a multiple of the page size
	// WakeupBytes is the ring's fill level from which a record wakes the
	// reader; 0 means a quarter of the ring. Below it the reader finds
	// records on its own timer.
	WakeupBytes uint32
	Interfaces  int // number of program instances (one per interface)
	// SingleBuffer also loads the single-buffer build. The verifier
	// takes it only from a process with CAP_PERFMON or CAP_SYS_ADMIN.
	SingleBuffer bool
	// Filter, if not nil, narrows the selection: a frame must pass the
	// length test and match it.
	Filter *Filter
}

func (c Config) wakeupBytes() uint32 {
	if c.WakeupBytes == 0 {
		return c.RingSize / 4
	}
	return c.WakeupBytes
}

// RecordSize is the ring space the largest record takes, that of a frame
// of snaplen bytes or more, kernel header included.
func (c Config) RecordSize() uint32 {
	return (ringRecordHeaderSize + uint32(EventHeaderSize) + c.SnapLen + 7) &^ 7
}

// Validate checks what the kernel would reject with a bare EINVAL.
func (c Config) Validate() error {
	if c.SnapLen < 1 || c.SnapLen > MaxSnapLen {
		return fmt.Errorf("snaplen %d is out of range 1-%d", c.SnapLen, MaxSnapLen)
	}
	if err := ValidateRingSize(uint64(c.RingSize)); err != nil {
		return err
	}
	if c.RingSize <= c.RecordSize() {
		return fmt.Errorf("ring size %s cannot hold one %d-byte record of snaplen %d: use at least %s",
			FormatSize(uint64(c.RingSize)), c.RecordSize(), c.SnapLen, FormatSize(nextPowerOfTwo(uint64(c.RecordSize())+1)))
	}
	if c.Interfaces < 1 {
		return errors.New("no interface to load the program for")
	}
	return nil
}

// Objects are the loaded program instances and the maps they share.
type Objects struct {
	// Programs holds one instance of the multi-buffer ("xdp.frags")
	// program per interface; instance i counts into slot i of Counters.
	// It takes any frame: a test run's, generic mode's, a jumbo one's.
	Programs []*ebpf.Program
	// Linear holds the single-buffer build, instance i beside
	// Programs[i], if Config.SingleBuffer. It is cheaper per frame and
	// only for native mode, where a driver attaches it only if it never
	// builds multi-buffer frames.
	Linear   []*ebpf.Program
	Events   *ebpf.Map
	Counters *ebpf.Map
	Scratch  *ebpf.Map // a record per CPU, copied into Events
}

// Load loads the program, one instance per interface (and one of the
// single-buffer build too if cfg.SingleBuffer), all writing into one ring.
func Load(cfg Config) (*Objects, error) {
	spec, err := loadRingcap()
	if err != nil {
		return nil, fmt.Errorf("read embedded XDP object: %w", err)
	}
	linear := ""
	if cfg.SingleBuffer {
		linear = ringcapProgRingcapLinear
	}
	return loadSpec(spec, cfg, ringcapProgRingcapXdp, linear)
}

// loadSpec loads the programs named multiBuffer and linear (either may be
// empty) from spec, an object compiled from ringcap.c, with cfg's
// constants: Load's work, open to the benchmarks' variants.
func loadSpec(spec *ebpf.CollectionSpec, cfg Config, multiBuffer, linear string) (*Objects, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// The caller's spec stays as it was: the benchmarks load one several
	// times.
	spec = spec.Copy()
	spec.Maps[ringcapMapEvents].MaxEntries = cfg.RingSize
	spec.Maps[ringcapMapCounters].MaxEntries = uint32(cfg.Interfaces)
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count CPUs: %w", err)
	}
	spec.Maps[ringcapMapScratch].MaxEntries = uint32(cpus)
	spec.Maps[ringcapMapScratch].ValueSize = uint32(EventHeaderSize) + cfg.SnapLen
	if cfg.Filter != nil {
		// Only the single-buffer build is sure to be loaded with
		// CAP_PERFMON.
		for _, build := range []struct {
			name    string
			perfmon bool
		}{{multiBuffer, false}, {linear, true}} {
			if build.name == "" {
				continue
			}
			if err := cfg.Filter.inject(spec.Programs[build.name], build.perfmon); err != nil {
				return nil, err
			}
		}
	}

	all := uint32(0)
	if cfg.CaptureAll {
		all = 1
	}
	for name, v := range map[string]any{
		ringcapVarMtu:         cfg.MTU,
		ringcapVarCaptureAll:  all,
		ringcapVarSnaplen:     cfg.SnapLen,
		ringcapVarRingSize:    uint64(cfg.RingSize),
		ringcapVarWakeupBytes: uint64(cfg.wakeupBytes()),
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}

	objs := &Objects{}
	if objs.Events, err = ebpf.NewMap(spec.Maps[ringcapMapEvents]); err != nil {
		return nil, explain("create ring buffer", err)
	}
	if objs.Counters, err = ebpf.NewMap(spec.Maps[ringcapMapCounters]); err != nil {
		objs.Close()
		return nil, explain("create counters", err)
	}
	if objs.Scratch, err = ebpf.NewMap(spec.Maps[ringcapMapScratch]); err != nil {
		objs.Close()
		return nil, explain("create scratch records", err)
	}
	for _, build := range []struct {
		program string
		into    *[]*ebpf.Program
	}{{multiBuffer, &objs.Programs}, {linear, &objs.Linear}} {
		if build.program == "" {
			continue
		}
		for i := range cfg.Interfaces {
			prog, err := loadInstance(spec, build.program, uint32(i), objs, cfg.Filter)
			if err != nil {
				objs.Close()
				return nil, err
			}
			*build.into = append(*build.into, prog)
		}
	}
	return objs, nil
}

func loadInstance(spec *ebpf.CollectionSpec, program string, slot uint32, objs *Objects, filter *Filter) (*ebpf.Program, error) {
	spec = spec.Copy()
	for name := range spec.Programs {
		if name != program {
			delete(spec.Programs, name)
		}
	}
	if err := spec.Variables[ringcapVarSlot].Set(slot); err != nil {
		return nil, fmt.Errorf("set slot: %w", err)
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{
			ringcapMapEvents:   objs.Events,
			ringcapMapCounters: objs.Counters,
			ringcapMapScratch:  objs.Scratch,
		},
	})
	if err != nil {
		if filter != nil {
			return nil, filter.refused(err)
		}
		return nil, explain("load XDP program", err)
	}
	// The program keeps its .rodata alive; the collection's own handles
	// are not needed.
	prog := coll.DetachProgram(program)
	coll.Close()
	return prog, nil
}

// Close releases the programs and maps. Programs attached through a
// bpf_link stay attached until the link is closed.
func (o *Objects) Close() error {
	var errs []error
	for _, p := range slices.Concat(o.Programs, o.Linear) {
		errs = append(errs, p.Close())
	}
	if o.Events != nil {
		errs = append(errs, o.Events.Close())
	}
	if o.Counters != nil {
		errs = append(errs, o.Counters.Close())
	}
	if o.Scratch != nil {
		errs = append(errs, o.Scratch.Close())
	}
	return errors.Join(errs...)
}

// Counters are one interface's counts, summed over CPUs.
type Counters struct {
	Seen          uint64 // frames the program ran on
	Selected      uint64 // frames that matched the selection
	Written       uint64 // selected frames submitted to the ring
	RingFull      uint64 // selected frames skipped: the ring had no room
	ReserveFailed uint64 // selected frames lost although the ring seemed to have room
}

// Dropped is the number of selected frames that did not reach the ring.
func (c Counters) Dropped() uint64 { return c.RingFull + c.ReserveFailed }

// Add returns the sum of c and d.
func (c Counters) Add(d Counters) Counters {
	return Counters{
		Seen:          c.Seen + d.Seen,
		Selected:      c.Selected + d.Selected,
		Written:       c.Written + d.Written,
		RingFull:      c.RingFull + d.RingFull,
		ReserveFailed: c.ReserveFailed + d.ReserveFailed,
	}
}

// ReadCounters returns the counters of program instance slot.
func (o *Objects) ReadCounters(slot int) (Counters, error) {
	var perCPU []ringcapIfaceCounters
	if err := o.Counters.Lookup(uint32(slot), &perCPU); err != nil {
		return Counters{}, fmt.Errorf("read counters: %w", err)
	}
	var sum Counters
	for _, c := range perCPU {
		sum = sum.Add(Counters{c.Seen, c.Selected, c.Written, c.RingFull, c.ReserveFailed})
	}
	return sum, nil
}

// verifierLogLines is how much of the verifier's log a rejection shows:
// the reason is in the last lines, the rest is the program listing.
const verifierLogLines = 6

// explain turns the kernel's refusals into something a user can act on.
func explain(what string, err error) error {
	var verr *ebpf.VerifierError
	switch {
	case errors.As(err, &verr):
		return &VerifierError{What: what, Log: lastLines(verr.Log, verifierLogLines), Err: err}
	case errors.Is(err, unix.EPERM), errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%s: %w", what, ErrPrivileges)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ErrPrivileges is the kernel refusing ringcap for want of privileges.
var ErrPrivileges = errors.New("ringcap needs root, or the capabilities CAP_BPF and CAP_NET_ADMIN: run it with sudo")

// VerifierError is the kernel's verifier refusing the program.
type VerifierError struct {
	What string
	Log  []string // last lines of the verifier's log
	Err  error
}

func (e *VerifierError) Error() string {
	return fmt.Sprintf("%s: the kernel's verifier rejected it; last lines of its log:\n  %s",
		e.What, strings.Join(e.Log, "\n  "))
}

func (e *VerifierError) Unwrap() error { return e.Err }

func lastLines(lines []string, n int) []string {
	for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}
