package bpf

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
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
	EventSlotOffset     = int(unsafe.Offsetof(ringcapEvent{}.Slot))
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

// Config is the selection and ring layout baked into the programs at load.
type Config struct {
	MTU        uint32 // frames whose L3 length exceeds MTU are selected
	CaptureAll bool   // select every frame
	SnapLen    uint32 // bytes of each selected frame copied into the ring
	RingSize   uint32 // bytes; a power of two and a multiple of the page size
	// WakeupBytes is the ring's fill level from which a record wakes the
	// reader; 0 means a quarter of the ring. Below it the reader finds
	// records on its own timer.
	WakeupBytes uint32
	// Slots is the number of program instances that count and write
	// into the ring: one per interface and direction.
	Slots int
	// Perfmon says the process has CAP_PERFMON (or CAP_SYS_ADMIN): the
	// verifier then takes packet pointers moved by a register, which the
	// single-buffer XDP build needs, and the expression's fastest loads.
	Perfmon bool
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

// wakeupShift makes records above wakeupBytes wake the reader once in
// every step of 1 << wakeupShift bytes: a power of two between a
// sixteenth and an eighth of wakeupBytes, so that a boundary two CPUs'
// records both missed is followed by others, and at most a quarter of
// the room above wakeupBytes. 8 bytes at the least: every record then
// wakes it.
func (c Config) wakeupShift() uint64 {
	wb := c.wakeupBytes()
	step := wb / 8
	if c.RingSize > wb {
		step = min(step, (c.RingSize-wb)/4)
	}
	return uint64(max(bits.Len32(step), 4) - 1)
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
	if c.Slots < 1 {
		return errors.New("no interface to load the program for")
	}
	return nil
}

// Build is one of the program's builds, one per kind of hook.
type Build int

const (
	// XDP is the multi-buffer ("xdp.frags") build: it takes any frame,
	// a test run's, generic mode's, a jumbo one's.
	XDP Build = iota
	// XDPLinear is the single-buffer build: cheaper per frame, for
	// native mode only, where a driver attaches it only if it never
	// builds multi-buffer frames. It needs Config.Perfmon.
	XDPLinear
	// TC is the tc (tcx) build, for either direction.
	TC
)

func (b Build) String() string {
	switch b {
	case XDP:
		return "XDP"
	case XDPLinear:
		return "single-buffer XDP"
	case TC:
		return "tc"
	}
	return fmt.Sprintf("Build(%d)", int(b))
}

// Instance is one program instance to load.
type Instance struct {
	Build Build
	Slot  int // counts into this slot; the ring records carry it
	// Device, if not 0, binds an XDP build to the interface of this
	// index: only a bound program may ask the driver for the VLAN tag
	// it took out of a frame, and only native mode takes it.
	Device int
	// Outbound says the instance sees sent frames (tc egress): the
	// expression's inbound and outbound keywords test it.
	Outbound bool
}

// Objects are the maps the program instances share, and the means to load
// instances.
type Objects struct {
	spec     *ebpf.CollectionSpec
	cfg      Config
	programs []*ebpf.Program // every instance loaded, for Close

	Events   *ebpf.Map
	Counters *ebpf.Map
	Scratch  *ebpf.Map // a record per CPU, copied into Events
}

// Load creates the maps for cfg; Program loads instances into them.
func Load(cfg Config) (*Objects, error) {
	spec, err := loadRingcap()
	if err != nil {
		return nil, fmt.Errorf("read embedded XDP object: %w", err)
	}
	return loadSpec(spec, cfg)
}

// loadSpec is Load's work on spec, an object compiled from ringcap.c: open
// to the benchmarks' variants.
func loadSpec(spec *ebpf.CollectionSpec, cfg Config) (*Objects, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// The caller's spec stays as it was: the benchmarks load one several
	// times.
	spec = spec.Copy()
	spec.Maps[ringcapMapEvents].MaxEntries = cfg.RingSize
	spec.Maps[ringcapMapCounters].MaxEntries = uint32(cfg.Slots)
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count CPUs: %w", err)
	}
	spec.Maps[ringcapMapScratch].MaxEntries = uint32(cpus)
	spec.Maps[ringcapMapScratch].ValueSize = uint32(EventHeaderSize) + cfg.SnapLen

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
		ringcapVarWakeupShift: cfg.wakeupShift(),
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}

	objs := &Objects{spec: spec, cfg: cfg}
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
	return objs, nil
}

// programName is the function in ringcap.c that is inst's entry point.
func (inst Instance) programName() string {
	switch {
	case inst.Build == TC:
		return ringcapProgRingcapTc
	case inst.Build == XDPLinear && inst.Device != 0:
		return ringcapProgRingcapLinTag
	case inst.Build == XDPLinear:
		return ringcapProgRingcapLinear
	case inst.Device != 0:
		return ringcapProgRingcapXdpTag
	}
	return ringcapProgRingcapXdp
}

// Program loads an instance. It stays loaded until it is closed, or the
// Objects are.
func (o *Objects) Program(inst Instance) (*ebpf.Program, error) {
	return o.load(inst.programName(), inst)
}

// load loads the program named program from the spec as inst: Program's
// work, open to the benchmarks' variants.
func (o *Objects) load(program string, inst Instance) (*ebpf.Program, error) {
	if inst.Slot < 0 || inst.Slot >= o.cfg.Slots {
		return nil, fmt.Errorf("slot %d of %d", inst.Slot, o.cfg.Slots)
	}
	if inst.Build == XDPLinear && !o.cfg.Perfmon {
		return nil, errors.New("the single-buffer build needs CAP_PERFMON")
	}
	spec := o.spec.Copy()
	for name := range spec.Programs {
		if name != program {
			delete(spec.Programs, name)
		}
	}
	prog := spec.Programs[program]
	if prog == nil {
		return nil, fmt.Errorf("no program %s in the object", program)
	}
	if inst.Device != 0 {
		prog.Flags |= unix.BPF_F_XDP_DEV_BOUND_ONLY
		prog.Ifindex = uint32(inst.Device)
	}
	if o.cfg.Filter != nil {
		t := target{tc: inst.Build == TC, direct: o.cfg.Perfmon && inst.Build != XDP, outbound: inst.Outbound}
		if err := o.cfg.Filter.inject(prog, t); err != nil {
			return nil, err
		}
	}
	if err := spec.Variables[ringcapVarSlot].Set(uint32(inst.Slot)); err != nil {
		return nil, fmt.Errorf("set slot: %w", err)
	}
	ingress := uint32(0)
	if inst.Build == TC && !inst.Outbound {
		ingress = 1
	}
	if err := spec.Variables[ringcapVarTcIngress].Set(ingress); err != nil {
		return nil, fmt.Errorf("set tc_ingress: %w", err)
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{
			ringcapMapEvents:   o.Events,
			ringcapMapCounters: o.Counters,
			ringcapMapScratch:  o.Scratch,
		},
	})
	if err != nil {
		if o.cfg.Filter != nil {
			return nil, o.cfg.Filter.refused(err)
		}
		return nil, explain("load "+inst.Build.String()+" program", err)
	}
	// The program keeps its .rodata alive; the collection's own handles
	// are not needed.
	p := coll.DetachProgram(program)
	coll.Close()
	o.programs = append(o.programs, p)
	return p, nil
}

// Close releases the maps and every program instance not closed yet.
// Programs attached through a bpf_link stay attached until the link is
// closed.
func (o *Objects) Close() error {
	var errs []error
	for _, p := range o.programs {
		errs = append(errs, p.Close())
	}
	o.programs = nil
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

// Counters are one slot's counts, summed over CPUs.
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

// ReadCounters returns the counters of slot.
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
