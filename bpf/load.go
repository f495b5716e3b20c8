package bpf

import (
	"errors"
	"fmt"
	"math"
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
	// MaxRings bounds Config.Rings: the hosts with most CPUs have a few
	// thousand.
	MaxRings = 8192
)

// Config is the selection and ring layout baked into the programs at load.
type Config struct {
	MTU        uint32 // frames whose L3 length exceeds MTU are selected
	CaptureAll bool   // select every frame
	SnapLen    uint32 // bytes of each selected frame copied into the ring
	// RingSize is each ring's size in bytes: a power of two and a
	// multiple of the page size.
	RingSize uint32
	// Rings is how many rings the CPUs write into, the CPUs spread
	// evenly over them; 0 is one, shared by every CPU. Rings past the
	// number of CPUs take only the records of CPUs whose own ring is
	// full.
	Rings int
	// WakeupBytes is the ring's fill level from which a record wakes the
	// reader; 0 means a quarter of the ring. Below it the reader finds
	// records on its own timer.
	WakeupBytes uint32
	// Slots is the number of hooks (interface and direction) that
	// count and write into the ring, each in a slot of its own.
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
	if c.Rings < 0 || c.Rings > MaxRings {
		return fmt.Errorf("%d rings: give 1 to %d", c.Rings, MaxRings)
	}
	return nil
}

// rings is the number of rings, Rings or its default, one.
func (c Config) rings() int { return max(c.Rings, 1) }

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

// Instance is one program instance to load. A live instance serves every
// interface it is attached to: it finds a frame's slot by the interface's
// index (SetSlot).
type Instance struct {
	Build Build
	// Device, if not 0, binds an XDP build to the interface of this
	// index: only a bound program may ask the driver for the VLAN tag
	// it took out of a frame, and only native mode takes it.
	Device int
	// Outbound says the instance sees sent frames (tc egress): the
	// expression's inbound and outbound keywords test it, and it
	// counts into its interfaces' outbound slots.
	Outbound bool
	// Replay says the instance runs in test runs only, where the
	// context names the slot (ReplayRunner).
	Replay bool
}

// Objects are the maps the program instances share, and the instances,
// each loaded once.
type Objects struct {
	spec     *ebpf.CollectionSpec
	cfg      Config
	cpus     int // possible CPUs
	programs map[loaded]*ebpf.Program

	// Rings are the ring buffers, in the order of RingTable, the
	// program's map of them.
	Rings     []*ebpf.Map
	RingTable *ebpf.Map
	CPURing   *ebpf.Map // per CPU, its ring, and the one it spilled into last
	Counters  *ebpf.Map
	Scratch   *ebpf.Map // a record per CPU, copied into a ring
	// The slots of each interface's hooks, by interface index, for
	// each direction; past smallIndexes, for both.
	InboundSlots, OutboundSlots, LargeIndexSlots *ebpf.Map
}

// smallIndexes is how many interface indexes the program finds in an
// array (a few nanoseconds a frame) rather than a hash (some 28): 4 bytes
// each, per direction. A namespace numbers its interfaces upwards, without reusing
// numbers soon, so its indexes exceed this only after tens of thousands of
// interfaces came and went.
const smallIndexes = 1 << 16

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
	spec.Maps[ringcapMapRings].MaxEntries = uint32(cfg.rings())
	spec.Maps[ringcapMapRings].InnerMap.MaxEntries = cfg.RingSize
	spec.Maps[ringcapMapCounters].MaxEntries = uint32(cfg.Slots)
	spec.Maps[ringcapMapInboundSlots].MaxEntries = smallIndexes
	spec.Maps[ringcapMapOutboundSlots].MaxEntries = smallIndexes
	spec.Maps[ringcapMapLargeIndexSlots].MaxEntries = uint32(cfg.Slots)
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count CPUs: %w", err)
	}
	spec.Maps[ringcapMapScratch].MaxEntries = uint32(cpus)
	spec.Maps[ringcapMapScratch].ValueSize = uint32(EventHeaderSize) + cfg.SnapLen

	for name, v := range map[string]any{
		ringcapVarRingCount:   uint32(cfg.rings()),
		ringcapVarMtu:         cfg.MTU,
		ringcapVarCaptureAll:  boolConst(cfg.CaptureAll),
		ringcapVarSnaplen:     cfg.SnapLen,
		ringcapVarRingSize:    uint64(cfg.RingSize),
		ringcapVarWakeupBytes: uint64(cfg.wakeupBytes()),
		ringcapVarWakeupShift: cfg.wakeupShift(),
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}

	objs := &Objects{spec: spec, cfg: cfg, cpus: cpus, programs: make(map[loaded]*ebpf.Program)}
	for _, m := range []struct {
		to   **ebpf.Map
		name string
		what string
	}{
		{&objs.RingTable, ringcapMapRings, "ring table"},
		{&objs.CPURing, ringcapMapCpuRing, "ring table"},
		{&objs.Counters, ringcapMapCounters, "counters"},
		{&objs.Scratch, ringcapMapScratch, "scratch records"},
		{&objs.InboundSlots, ringcapMapInboundSlots, "slot table"},
		{&objs.OutboundSlots, ringcapMapOutboundSlots, "slot table"},
		{&objs.LargeIndexSlots, ringcapMapLargeIndexSlots, "slot table"},
	} {
		if *m.to, err = ebpf.NewMap(spec.Maps[m.name]); err != nil {
			objs.Close()
			return nil, explain("create "+m.what, err)
		}
	}
	if err := objs.createRings(spec.Maps[ringcapMapRings].InnerMap); err != nil {
		objs.Close()
		return nil, err
	}
	return objs, nil
}

// createRings creates the rings, puts them in the ring table and gives
// each CPU its own. Every update of a map of maps waits for an RCU grace
// period, some 10 ms here (BenchmarkLoadRings): one batch update puts all
// the rings in the table at the cost of one (Linux 6.8 on; before, it
// waits once per ring, as single updates do).
func (o *Objects) createRings(spec *ebpf.MapSpec) error {
	choices := make([]ringcapRingChoice, o.cpus)
	for cpu := range choices {
		home := uint32(o.RingOf(cpu))
		choices[cpu] = ringcapRingChoice{Home: home, Spill: home}
	}
	if err := o.CPURing.Put(uint32(0), choices); err != nil {
		return fmt.Errorf("give each CPU its ring: %w", err)
	}
	keys := make([]uint32, o.cfg.rings())
	fds := make([]uint32, o.cfg.rings())
	for i := range o.cfg.rings() {
		ring, err := ebpf.NewMap(spec)
		if err != nil {
			return explain(fmt.Sprintf("create ring %d of %s", i, FormatSize(uint64(o.cfg.RingSize))), err)
		}
		o.Rings = append(o.Rings, ring)
		keys[i], fds[i] = uint32(i), uint32(ring.FD())
	}
	if _, err := o.RingTable.BatchUpdate(keys, fds, nil); err == nil {
		return nil
	}
	// A kernel without batch updates of maps of maps: one ring at a
	// time, which also names the ring a real failure is about.
	for i, ring := range o.Rings {
		if err := o.RingTable.Put(uint32(i), ring); err != nil {
			return fmt.Errorf("put ring %d in the ring table: %w", i, err)
		}
	}
	return nil
}

// SetSlot makes the frames of the interface of index ifindex, in the
// direction outbound says, count and record as slot's: before the first
// instance is attached there, since frames of an interface without a slot
// are passed on unseen.
func (o *Objects) SetSlot(ifindex int, outbound bool, slot int) error {
	if slot < 0 || slot >= o.cfg.Slots {
		return fmt.Errorf("slot %d of %d", slot, o.cfg.Slots)
	}
	return o.updateSlots(ifindex, outbound, uint32(slot)+1)
}

// ClearSlot undoes SetSlot: the interface's frames in that direction are
// seen no more, as for an interface ringcap never captured on.
func (o *Objects) ClearSlot(ifindex int, outbound bool) error {
	return o.updateSlots(ifindex, outbound, 0)
}

// updateSlots sets one direction's slot plus one, 0 for none, of the
// interface.
func (o *Objects) updateSlots(ifindex int, outbound bool, slot uint32) error {
	if ifindex <= 0 || ifindex > math.MaxInt32 {
		return fmt.Errorf("interface index %d is out of range", ifindex)
	}
	table, key := o.InboundSlots, uint32(ifindex)
	if outbound {
		table = o.OutboundSlots
	}
	if key >= smallIndexes {
		table, key = o.LargeIndexSlots, key<<1|boolConst(outbound)
		if slot == 0 {
			if err := table.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("clear the slot of interface %d: %w", ifindex, err)
			}
			return nil
		}
	}
	if err := table.Put(key, slot); err != nil {
		return fmt.Errorf("set the slot of interface %d: %w", ifindex, err)
	}
	return nil
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

// Program returns the instance, loading it the first time it is asked
// for. It stays loaded until the Objects are closed; the caller must not
// close it.
func (o *Objects) Program(inst Instance) (*ebpf.Program, error) {
	return o.program(inst.programName(), inst)
}

// loaded is a program instance loaded: the program of the object, and
// what it was loaded as.
type loaded struct {
	program string
	Instance
}

// program returns the program named program from the spec as inst,
// loading it the first time: Program's work, open to the benchmarks'
// variants.
func (o *Objects) program(program string, inst Instance) (*ebpf.Program, error) {
	key := loaded{program, inst}
	if p, ok := o.programs[key]; ok {
		return p, nil
	}
	p, err := o.load(program, inst)
	if err != nil {
		return nil, err
	}
	o.programs[key] = p
	return p, nil
}

// Release closes an instance no hook runs any more: a device-bound one
// whose device went away or refused it. Shared instances stay loaded
// until the Objects are closed.
func (o *Objects) Release(inst Instance) error {
	key := loaded{inst.programName(), inst}
	p, ok := o.programs[key]
	if !ok {
		return nil
	}
	delete(o.programs, key)
	return p.Close()
}

// DeviceBound is the number of instances loaded bound to a device.
func (o *Objects) DeviceBound() int {
	n := 0
	for p := range o.programs {
		if p.Device != 0 {
			n++
		}
	}
	return n
}

// load loads the program named program from the spec as inst.
func (o *Objects) load(program string, inst Instance) (*ebpf.Program, error) {
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
	for name, set := range map[string]bool{
		ringcapVarOutbound: inst.Outbound,
		ringcapVarReplay:   inst.Replay,
		// Reading the kernel's socket buffer takes CAP_PERFMON.
		ringcapVarKernelSkb: inst.Build == TC && o.cfg.Perfmon,
	} {
		if err := spec.Variables[name].Set(boolConst(set)); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{
			ringcapMapRings:           o.RingTable,
			ringcapMapCpuRing:         o.CPURing,
			ringcapMapCounters:        o.Counters,
			ringcapMapScratch:         o.Scratch,
			ringcapMapInboundSlots:    o.InboundSlots,
			ringcapMapOutboundSlots:   o.OutboundSlots,
			ringcapMapLargeIndexSlots: o.LargeIndexSlots,
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
	return p, nil
}

// boolConst is a flag as the program's load-time constants hold it.
func boolConst(b bool) uint32 {
	if b {
		return 1
	}
	return 0
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
	for _, m := range append(o.Rings, o.RingTable, o.CPURing, o.Counters, o.Scratch, o.InboundSlots, o.OutboundSlots, o.LargeIndexSlots) {
		if m != nil {
			errs = append(errs, m.Close())
		}
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
	perCPU, err := o.ReadCPUCounters(slot)
	var sum Counters
	for _, c := range perCPU {
		sum = sum.Add(c)
	}
	return sum, err
}

// ReadCPUCounters returns the counters of slot on each CPU: RingOf tells
// the ring whose writers they count.
func (o *Objects) ReadCPUCounters(slot int) ([]Counters, error) {
	var perCPU []ringcapIfaceCounters
	if err := o.Counters.Lookup(uint32(slot), &perCPU); err != nil {
		return nil, fmt.Errorf("read counters: %w", err)
	}
	out := make([]Counters, len(perCPU))
	for i, c := range perCPU {
		out[i] = Counters{c.Seen, c.Selected, c.Written, c.RingFull, c.ReserveFailed}
	}
	return out, nil
}

// RingOf is the ring of CPU cpu, the one it writes into while that has
// room. CPUs take turns, rather than forming runs of neighbours: where
// the kernel knows of more CPUs than are online (a VM's slots for hot
// plugging), the online ones, numbered first, still get rings of their
// own.
func (o *Objects) RingOf(cpu int) int { return cpu % o.cfg.rings() }

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
