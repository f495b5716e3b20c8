// Package capture attaches ringcap's program to interfaces, at XDP and tcx
// hooks, drains its ring buffer and hands the captured frames to a Sink.
package capture

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/capture/packet"
)

// Config is what to capture and where.
type Config struct {
	// Interfaces are the names to capture on; AnyInterface alone means
	// every interface of the network namespace.
	Interfaces []string
	MTU        uint32 // select frames whose L3 length exceeds it
	CaptureAll bool   // select every frame, whatever its length
	// Filter, if not nil, narrows the selection to the frames that match
	// it as well.
	Filter  *bpf.Filter
	SnapLen uint32
	// RingSize is each ring's size, Rings the number of rings (0: one).
	RingSize uint32
	Rings    int
	// WakeupBytes: see bpf.Config; 0 means a quarter of the ring.
	WakeupBytes uint32
	Mode        Mode       // XDP's
	Directions  Directions // -Q
	Hook        HookChoice // where inbound frames are captured
	// FollowLinks makes Run follow the interfaces: it takes the program
	// off one that goes away and ends, with ErrNoInterface, once none
	// is left; with AnyInterface, it captures on one that appears too.
	// A LinkSink hears of each.
	FollowLinks bool
}

// Selection is the whole selection as a filter string, for the file's
// if_filter: the length test (written l3len, which pcap-filter lacks)
// and the expression. It is empty when every frame is selected.
func (c Config) Selection() string {
	var parts []string
	if !c.CaptureAll {
		parts = append(parts, fmt.Sprintf("l3len > %d", c.MTU))
	}
	if c.Filter != nil {
		expr := c.Filter.Expr
		if len(parts) > 0 {
			expr = "(" + expr + ")"
		}
		parts = append(parts, expr)
	}
	return strings.Join(parts, " and ")
}

// Sink receives the captured frames, as writer.Files does. A packet's
// Interface is the position of its hook in Capture.Hooks; its Data is
// valid only during the call.
type Sink interface {
	WritePacket(p packet.Packet) error
	Flush() error
}

// IdleSink is a Sink that wants to know when the ring is empty, as
// writer.Files does to rotate files by the clock. Run calls Idle instead
// of Flush then.
type IdleSink interface {
	Sink
	Idle() error
}

// Capture is the program attached to a set of hooks.
type Capture struct {
	cfg     Config
	perfmon bool
	objs    *bpf.Objects
	hooks   hookTable
	skipped []error // hooks left out of -i any
	// present are the indexes of the interfaces there at Open, with
	// AnyInterface, for the watcher: any other is one that appeared
	// since.
	present map[int]bool

	// What goes on from one Run to the next: the ring's reader, mapped
	// once; the hooks the sink knows of; the drops, counted as the
	// program's counters are. packets is the current Run's, for those
	// who ask while it runs.
	rings   *reader
	handed  int
	drops   *dropCounter
	packets atomic.Uint64 // frames handed to the sink
}

// Open loads the program and attaches it to every interface in cfg, at a
// hook for each direction. The kernel detaches it when the process exits,
// however it exits: each attachment is a bpf_link owned by a file
// descriptor, not a setting left on the interface.
func Open(cfg Config) (*Capture, error) {
	ifaces, err := lookupInterfaces(cfg.Interfaces)
	if err != nil {
		return nil, err
	}
	perfmon, err := checkPrivileges()
	if err != nil {
		return nil, err
	}
	hooks, err := planHooks(ifaces, cfg)
	if err != nil {
		return nil, err
	}
	// With -i any, interfaces that appear later take slots of their own.
	everyInterface := slices.Contains(cfg.Interfaces, AnyInterface)
	slots := len(hooks)
	if everyInterface {
		slots = max(slots, maxAnySlots)
	}
	objs, err := cfg.load(slots, perfmon)
	if err != nil {
		return nil, err
	}
	c := &Capture{objs: objs, cfg: cfg, perfmon: perfmon, hooks: hookTable{objs: objs, slots: slots}, present: make(map[int]bool)}
	if everyInterface {
		for _, ifc := range ifaces {
			c.present[ifc.Index] = true
		}
	}
	if c.drops, err = newDropCounter(slots); err != nil {
		objs.Close()
		return nil, err
	}
	// Mapping a ring costs milliseconds for a large one; it is done
	// once, not per Run.
	if c.rings, err = newReader(objs.Rings); err != nil {
		objs.Close()
		return nil, fmt.Errorf("open rings: %w", err)
	}
	// With -i any, a hook that cannot be had is left out, said in
	// Skipped; the capture goes on with the others.
	for _, h := range hooks {
		_, err := c.attach(h)
		if err != nil && everyInterface && !errors.Is(err, bpf.ErrPrivileges) {
			c.skipped = append(c.skipped, err)
			continue
		}
		if err != nil {
			c.Close()
			return nil, err
		}
	}
	if c.handed = c.hooks.count(); c.handed == 0 {
		c.Close()
		return nil, fmt.Errorf("no interface took ringcap's program: %w", errors.Join(c.skipped...))
	}
	// The sink is made for these (c.handed); later ones are handed over.
	return c, nil
}

// maxAnySlots bounds the hooks of a -i any capture, counting those of
// interfaces that come and go: a slot's counters take 40 bytes a CPU.
const maxAnySlots = 1024

// attach attaches h at the next slot, and returns it as attached.
func (c *Capture) attach(h Hook) (Hook, error) {
	return c.hooks.attach(h, c.attachAt)
}

// attachAt attaches the program at h, where the hook plan says: XDP,
// else tcx. A driver refusing native XDP sends received frames to tcx
// ingress where neither the hook nor the mode was asked for.
func (c *Capture) attachAt(h *Hook) (link.Link, error) {
	if h.XDP {
		l, err := c.attachXDP(h)
		var refused *NativeRefusedError
		if !errors.As(err, &refused) || c.cfg.Hook != HookAuto || c.cfg.Mode != ModeAuto {
			return l, err
		}
		h.XDP, h.WhyNotXDP = false, Note{Text: refused.reason()}
	}
	return attachTCX(c.objs, h)
}

// addInterface attaches the program to an interface that appeared while
// the capture runs (AnyInterface), and returns its hooks; Run hands them
// to the sink before their first frame. It may be called while Run runs.
func (c *Capture) addInterface(name string) ([]Hook, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", name, err)
	}
	hooks, err := planHooks([]*net.Interface{ifc}, c.cfg)
	if err != nil {
		return nil, err
	}
	var added []Hook
	var errs []error
	for _, h := range hooks {
		h, err := c.attach(h)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		added = append(added, h)
	}
	return added, errors.Join(errs...)
}

// removeInterface takes the program off the interface of index, which
// went away or moved to another namespace: there, the shared instances
// would count its frames as those of whatever interface of this
// namespace has its new index. Its hooks keep their slots, and their
// counters stay readable, for the file's statistics. It may be called
// while Run runs.
func (c *Capture) removeInterface(index int) error {
	return c.hooks.remove(index)
}

// HookSink is a Sink that takes hooks added while the capture runs, as
// interfaces of its own, after the others; Run calls AddHook just before
// the hook's first frame.
//
// With AnyInterface, a sink that is a LinkSink too hears of a hook that
// appeared twice, at two moments: InterfaceAdded, from the watcher's
// goroutine once the program is attached, so that the user learns of the
// capture there before any frame comes, or if none does; AddHook, from
// Run's, the only goroutine that writes to the sink, in the order of the
// frames, so that a file describes the interface just before its first
// frame and an interface without frames not at all. One call at either
// moment would change when the line is printed or what the files hold.
type HookSink interface {
	Sink
	AddHook(Hook) error
}

// Skipped are the hooks -i any left out, why each was refused.
func (c *Capture) Skipped() []error { return c.skipped }

// AnyInterface is tcpdump's name for every interface.
const AnyInterface = "any"

// planHooks lists a hook per interface and direction asked for: inbound
// frames at XDP, or at tcx ingress where --hook tc says so, another XDP
// program holds the interface, or (--hook auto) the driver runs no XDP
// itself; outbound ones at tcx egress. Loopback gets the inbound hook
// only: a frame sent there is received there too, and libpcap shows it
// once, as received.
func planHooks(ifaces []*net.Interface, cfg Config) ([]Hook, error) {
	var hooks []Hook
	for _, ifc := range ifaces {
		if cfg.Directions.Has(Inbound) {
			h := Hook{Interface: ifc.Name, Index: ifc.Index, Direction: Inbound, XDP: cfg.Hook != HookTC}
			if cfg.Hook == HookAuto {
				l, err := netlink.LinkByIndex(ifc.Index)
				if err != nil {
					return nil, fmt.Errorf("read interface %s: %w", ifc.Name, err)
				}
				h.Behind = attachedXDP(l)
				if h.Behind == "" && cfg.Mode == ModeAuto {
					h.WhyNotXDP = tcxPreferred(l)
				}
				h.XDP = h.Behind == "" && h.WhyNotXDP.Text == ""
			}
			hooks = append(hooks, h)
		}
		loopback := ifc.Flags&net.FlagLoopback != 0
		if cfg.Directions.Has(Outbound) && !(loopback && cfg.Directions.Has(Inbound)) {
			hooks = append(hooks, Hook{Interface: ifc.Name, Index: ifc.Index, Direction: Outbound})
		}
	}
	return hooks, nil
}

// load loads the program's maps for cfg's selection, with a slot for each
// hook.
func (cfg Config) load(slots int, perfmon bool) (*bpf.Objects, error) {
	return bpf.Load(bpf.Config{
		MTU:         cfg.MTU,
		CaptureAll:  cfg.CaptureAll,
		SnapLen:     cfg.SnapLen,
		RingSize:    cfg.RingSize,
		Rings:       cfg.Rings,
		WakeupBytes: cfg.WakeupBytes,
		Slots:       slots,
		Perfmon:     perfmon,
		Filter:      cfg.Filter,
	})
}

func lookupInterfaces(names []string) ([]*net.Interface, error) {
	if len(names) == 0 {
		return nil, errors.New("no interface given")
	}
	if slices.Contains(names, AnyInterface) {
		if len(names) > 1 {
			return nil, fmt.Errorf("%q is every interface already: it goes alone, not with other names", AnyInterface)
		}
		all, err := net.Interfaces()
		if err != nil {
			return nil, fmt.Errorf("list interfaces: %w", err)
		}
		ifaces := make([]*net.Interface, len(all))
		for i := range all {
			ifaces[i] = &all[i]
		}
		return ifaces, nil
	}
	seen := make(map[string]bool)
	var ifaces []*net.Interface
	for _, name := range names {
		if seen[name] {
			return nil, fmt.Errorf("interface %q is given twice", name)
		}
		seen[name] = true
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("unknown interface %q: `ip link` lists the interfaces", name)
		}
		ifaces = append(ifaces, ifc)
	}
	return ifaces, nil
}

// checkPrivileges tells a missing capability apart before the kernel
// answers EPERM for one of several reasons. It also says whether the
// process has CAP_PERFMON (or CAP_SYS_ADMIN), without which the verifier
// refuses packet-pointer arithmetic with a register (a Spectre v1 guard),
// which the single-buffer build needs.
func checkPrivileges() (perfmon bool, err error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, fmt.Errorf("read capabilities: %w", err)
	}
	has := func(c int) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	var missing []string
	// CAP_SYS_ADMIN stands in for CAP_BPF, as it did before Linux 5.8.
	if !has(unix.CAP_BPF) && !has(unix.CAP_SYS_ADMIN) {
		missing = append(missing, "CAP_BPF")
	}
	if !has(unix.CAP_NET_ADMIN) {
		missing = append(missing, "CAP_NET_ADMIN")
	}
	if len(missing) > 0 {
		return false, fmt.Errorf("%w (missing %s)", bpf.ErrPrivileges, strings.Join(missing, " and "))
	}
	return has(unix.CAP_PERFMON) || has(unix.CAP_SYS_ADMIN), nil
}

// Hooks returns where the program is attached, in the order of
// Config.Interfaces, inbound before outbound: the order of Counters, and
// of the Sink's interfaces.
func (c *Capture) Hooks() []Hook { return c.hooks.all() }

// Packets returns how many frames were handed to the sink so far. It may be
// called while Run runs.
func (c *Capture) Packets() uint64 { return c.packets.Load() }

// Rings is the number of rings.
func (c *Capture) Rings() int { return c.rings.Rings() }

// RingSize is each ring's size in bytes.
func (c *Capture) RingSize() int { return c.rings.RingSize() }

// RingUsed is how many bytes of ring i hold records not read yet, now,
// or read and not given back yet (1 MiB at most).
// It may be called while Run runs.
func (c *Capture) RingUsed(i int) int { return c.rings.Used(i) }

// Counters returns the program's counters per hook, in the order of
// Hooks. It may be called while Run runs.
func (c *Capture) Counters() ([]bpf.Counters, error) {
	return readCounters(c.objs, c.hooks.count())
}

// RingCounters returns the program's counters summed by ring: those of
// the CPUs that write into each ring while it has room. A frame a CPU
// wrote into another ring, its own being full, counts in its own ring's.
// It may be called while Run runs.
func (c *Capture) RingCounters() ([]bpf.Counters, error) {
	out := make([]bpf.Counters, c.rings.Rings())
	for slot := range c.hooks.count() {
		perCPU, err := c.objs.ReadCPUCounters(slot)
		if err != nil {
			return nil, err
		}
		for cpu, cnt := range perCPU {
			ring := c.objs.RingOf(cpu)
			out[ring] = out[ring].Add(cnt)
		}
	}
	return out, nil
}

func readCounters(objs *bpf.Objects, n int) ([]bpf.Counters, error) {
	out := make([]bpf.Counters, n)
	for i := range out {
		var err error
		if out[i], err = objs.ReadCounters(i); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Detach takes the program off every interface; no frame reaches the ring
// after it returns, but the ring keeps what is in it.
func (c *Capture) Detach() error { return c.hooks.detach() }

// Close detaches the program and frees the ring; Run must have returned.
func (c *Capture) Close() error {
	return errors.Join(c.Detach(), c.rings.Close(), c.objs.Close())
}

const (
	// flushInterval bounds how long a frame waits in the sink's buffer,
	// and how often the clock is resynced.
	flushInterval = time.Second
	// idleWait is how long after a flush the reader looks at the ring
	// and flushes again, woken or not: the program only wakes it once the
	// ring is a quarter full, so this bounds how long a record waits.
	idleWait = 200 * time.Millisecond
	// drainTimeout bounds the wait, after Detach, for records the
	// counters say were submitted but the ring has not shown yet.
	drainTimeout = time.Second
)

// Run hands every record in the ring to sink until ctx is done or limit
// frames (0: no limit) have been handed over. When ctx is done it detaches
// the program and hands over every record already in the ring before
// returning, so that the counters and the sink agree. With
// Config.FollowLinks it follows the interfaces meanwhile, and ends the
// same way when none is left, returning ErrNoInterface unless something
// else failed. Runs must not overlap: they share the capture's ring
// reader.
func (c *Capture) Run(ctx context.Context, sink Sink, limit uint64) error {
	if !c.cfg.FollowLinks {
		return c.run(ctx, sink, limit)
	}
	ctx, end := context.WithCancelCause(ctx)
	defer end(nil)
	stopWatch := c.watchLinks(sink, func() { end(ErrNoInterface) })
	err := c.run(ctx, sink, limit)
	stopWatch()
	if err == nil && errors.Is(context.Cause(ctx), ErrNoInterface) {
		return ErrNoInterface
	}
	return err
}

func (c *Capture) run(ctx context.Context, sink Sink, limit uint64) error {
	stopped := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		// Detach first: every record submitted before the links are
		// gone is then in the ring when Flush wakes the reader.
		c.Detach()
		close(stopped)
		c.rings.Flush()
	})
	defer stop()
	r := &liveRun{c: c, rd: c.rings, sink: sink, idle: sink.Flush, limit: limit, stopped: stopped,
		hooks: c.Hooks()[:c.handed]}
	if s, ok := sink.(IdleSink); ok {
		r.idle = s.Idle
	}
	if err := r.clk.sync(); err != nil {
		return err
	}
	defer func() {
		r.rd.Release()
		c.packets.Store(r.n)
		c.handed = len(r.hooks)
	}()
	if err := r.flush(sink.Flush); err != nil {
		return err
	}
	for {
		raw, err := r.rd.Next()
		var done bool
		switch {
		case err == nil:
			done, err = r.record(raw)
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, errFlushed):
			done, err = r.ringEmpty()
		default:
			return fmt.Errorf("read ring: %w", err)
		}
		if done || err != nil {
			return err
		}
	}
}

// liveRun is one Run's reading of the ring.
type liveRun struct {
	c     *Capture
	rd    *reader
	sink  Sink
	idle  func() error // the sink's Idle, else its Flush
	limit uint64
	// stopped is closed once Run's context is done and the program
	// detached.
	stopped <-chan struct{}
	clk     clock
	// hooks are those the sink knows of: Open's, then those handed
	// over.
	hooks     []Hook
	n         uint64 // frames handed to the sink
	lastFlush time.Time
	// drainEnd is when records the counters say are on their way, after
	// Detach, are given up for lost.
	drainEnd time.Time
}

// record hands one ring record to the sink; done says the limit is
// reached.
func (r *liveRun) record(raw []byte) (done bool, err error) {
	ev, err := decodeEvent(raw)
	if err != nil {
		return false, err
	}
	slot := int(ev.slot)
	if slot >= len(r.hooks) {
		// A hook added since: the sink learns of it first.
		if err := r.handOver(); err != nil {
			return false, err
		}
		if slot >= len(r.hooks) {
			return false, fmt.Errorf("ring record from slot %d, of %d hooks", slot, len(r.hooks))
		}
	}
	p := ev.packet(slot, r.hooks[slot].Direction, r.clk.wall(ev.tsNs), r.c.drops.since(slot, &ev))
	if err := r.sink.WritePacket(p); err != nil {
		return false, err
	}
	r.n++
	// An atomic store is a full barrier here: once a batch of records,
	// or every few hundred, is often enough for those who count.
	if r.n%256 == 0 || !r.rd.More() || r.n == r.limit {
		r.c.packets.Store(r.n)
	}
	if r.n == r.limit {
		return true, r.sink.Flush()
	}
	// Reading the time costs more than a record; look at it once every
	// few hundred.
	if r.n%256 == 0 && time.Since(r.lastFlush) >= flushInterval {
		return false, r.flush(r.sink.Flush)
	}
	return false, nil
}

// ringEmpty flushes the sink while the ring is empty. Once the program is
// detached, the run is done when every record the counters say was
// written has been read, or fails when they stop coming.
func (r *liveRun) ringEmpty() (done bool, err error) {
	r.c.packets.Store(r.n)
	if err := r.flush(r.idle); err != nil {
		return false, err
	}
	select {
	case <-r.stopped:
	default:
		return false, nil
	}
	written, err := r.c.written()
	if err != nil || r.n >= written {
		return true, err
	}
	// The counters say records are still on their way: a program run
	// that began before Detach can finish after it.
	if r.drainEnd.IsZero() {
		r.drainEnd = time.Now().Add(drainTimeout)
	} else if time.Now().After(r.drainEnd) {
		return false, fmt.Errorf("ring: %d records counted as written never arrived", written-r.n)
	}
	r.rd.SetDeadline(time.Now().Add(10 * time.Millisecond))
	return false, nil
}

// flush resyncs the clock and flushes the sink with flushSink. The
// deadline only matters once the ring is empty: records keep coming
// without a wait while it is not, so it is set once per flush, not once
// per record.
func (r *liveRun) flush(flushSink func() error) error {
	r.lastFlush = time.Now()
	r.rd.SetDeadline(r.lastFlush.Add(idleWait))
	if err := r.clk.sync(); err != nil {
		return err
	}
	return flushSink()
}

// handOver gives the sink the hooks added since it last learned of any.
func (r *liveRun) handOver() error {
	all := r.c.Hooks()
	hs, ok := r.sink.(HookSink)
	for _, h := range all[len(r.hooks):] {
		if !ok {
			return fmt.Errorf("a hook was added, but the sink takes no more interfaces")
		}
		if err := hs.AddHook(h); err != nil {
			return err
		}
		r.hooks = all[:len(r.hooks)+1]
	}
	return nil
}

// written is the number of records the programs submitted to the ring.
func (c *Capture) written() (uint64, error) {
	counts, err := c.Counters()
	if err != nil {
		return 0, err
	}
	var written uint64
	for _, cnt := range counts {
		written += cnt.Written
	}
	return written, nil
}
