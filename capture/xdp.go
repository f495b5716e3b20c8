package capture

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf"
)

// attachedXDP names the XDP program attached to the interface, or is ""
// if there is none.
func attachedXDP(l netlink.Link) string {
	x := l.Attrs().Xdp
	if x == nil || !x.Attached {
		return ""
	}
	return xdpProgramName(x.ProgId)
}

// xdpProgramName names an attached program: its name and id, or its id.
func xdpProgramName(id uint32) string {
	name := fmt.Sprintf("id %d", id)
	if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
		if info, err := p.Info(); err == nil && info.Name != "" {
			name = fmt.Sprintf("%s (id %d)", info.Name, id)
		}
		p.Close()
	}
	return name
}

// maxBound bounds the devices the capture binds an XDP program to: each
// takes a program of its own, where every other hook shares one instance
// of its build. Past it, an interface gets the unbound build, without the
// driver's VLAN tags (Hook.TagsCapped).
const maxBound = 16

// attachXDP attaches the cheapest XDP build that the interface takes in
// the capture's mode and fills in how h is attached: in native mode the
// single-buffer build (if the process may load it) where the driver
// accepts it, else the multi-buffer one, both bound to the device where
// the driver hands XDP the VLAN tags it takes out of frames; in generic
// mode always the multi-buffer build, since the kernel would copy every
// multi-buffer socket buffer into one for a single-buffer program, and
// unbound: generic mode takes no bound program. Generic mode is never
// chosen for the user: it costs as much per frame as tcx ingress or more,
// and some drivers make the kernel warn as it turns their offloads off. A
// driver refusing native mode is a *NativeRefusedError.
func (c *Capture) attachXDP(h *Hook) (link.Link, error) {
	h.XDP = true
	if c.cfg.Mode == ModeGeneric {
		return attachBuild(c.objs, h, bpf.XDP, false, ModeGeneric)
	}
	l, err := netlink.LinkByIndex(h.Index)
	if err != nil {
		return nil, fmt.Errorf("read interface %s: %w", h.Interface, err)
	}
	support := driverXDP(l)
	if support.refusal != "" {
		return nil, &NativeRefusedError{Hook: *h, Why: support.refusal, XDPAsked: c.cfg.Hook == HookXDP}
	}
	// Only a driver that hands XDP the tags gets a bound program; each
	// program bound stays bound to its device's hook (the attach that
	// fails closes it).
	bound := support.vlanTags
	if bound && c.objs.DeviceBound() >= maxBound {
		bound, h.TagsCapped = false, true
	}
	var linearErr error
	if c.perfmon {
		// A driver refuses the single-buffer build when its MTU would
		// need multi-buffer frames (veth: "Peer MTU is too large to
		// set XDP").
		ll, err := attachBuild(c.objs, h, bpf.XDPLinear, bound, ModeNative)
		if err == nil || errors.As(err, new(*XDPBusyError)) || errors.Is(err, bpf.ErrPrivileges) {
			return ll, err
		}
		linearErr = err
	}
	xl, err := attachBuild(c.objs, h, bpf.XDP, bound, ModeNative)
	if err == nil || errors.As(err, new(*XDPBusyError)) || errors.Is(err, bpf.ErrPrivileges) {
		return xl, err
	}
	return nil, &NativeRefusedError{Hook: *h, Err: bothBuilds(err, linearErr), XDPAsked: c.cfg.Hook == HookXDP}
}

// NativeRefusedError is a driver that does not take ringcap's program in
// native mode: Why says why where ringcap knows beforehand, else Err is
// the driver's refusal. tcx ingress would take the interface's received
// frames instead, and generic mode would give XDP.
type NativeRefusedError struct {
	Hook Hook
	Why  string
	Err  error
	// XDPAsked says XDP was asked for (HookXDP), rather than chosen.
	XDPAsked bool
}

func (e *NativeRefusedError) Error() string {
	if e.Why != "" {
		return fmt.Sprintf("attach %s in native mode: %s", e.Hook.Interface, e.Why)
	}
	return e.Err.Error()
}

func (e *NativeRefusedError) Unwrap() error { return e.Err }

// reason is why native mode was not had, for the hook's notes.
func (e *NativeRefusedError) reason() string {
	if e.Why != "" {
		return e.Why
	}
	var errno unix.Errno
	if errors.As(e.Err, &errno) {
		return fmt.Sprintf("the driver refused native XDP (%v)", errno)
	}
	return "the driver refused native XDP"
}

// XDPBusyError is an interface that another XDP program holds already;
// tcx ingress would capture its received frames beside it.
type XDPBusyError struct {
	Hook Hook
	Mode Mode
}

func (e *XDPBusyError) Error() string {
	return fmt.Sprintf("attach %s in %s mode: the interface already has an XDP program; `ip link show %s` names it",
		e.Hook.Interface, e.Mode, e.Hook.Interface)
}

// attachBuild attaches build for h (bound to the device if bound) in
// mode.
func attachBuild(objs *bpf.Objects, h *Hook, build bpf.Build, bound bool, mode Mode) (link.Link, error) {
	inst := bpf.Instance{Build: build}
	if bound {
		inst.Device = h.Index
	}
	prog, err := objs.Program(inst)
	if err != nil && bound {
		// A device that takes no bound program still takes the
		// program, without the tags.
		inst.Device, bound = 0, false
		prog, err = objs.Program(inst)
	}
	if err != nil {
		return nil, err
	}
	l, err := attachMode(prog, h, mode)
	if err != nil {
		if bound {
			// Nothing else runs it: it would count against maxBound.
			objs.Release(inst)
		}
		return nil, err
	}
	h.Mode, h.MultiBuffer, h.Tags = mode, build == bpf.XDP, bound
	return l, nil
}

// boundInstance is the program instance bound to h's device, if h has one.
func (h Hook) boundInstance() (bpf.Instance, bool) {
	build := bpf.XDPLinear
	if h.MultiBuffer {
		build = bpf.XDP
	}
	return bpf.Instance{Build: build, Device: h.Index}, h.XDP && h.Tags
}

// bothBuilds is the error of a native attach where the driver refused
// the multi-buffer build with multiErr after the single-buffer one with
// linearErr (nil if it was not tried): each refusal is said, once.
func bothBuilds(multiErr, linearErr error) error {
	if linearErr == nil || linearErr.Error() == multiErr.Error() {
		return multiErr
	}
	// Both errors start with "attach IFACE in native mode: ".
	reason := linearErr
	if inner := errors.Unwrap(linearErr); inner != nil {
		reason = inner
	}
	return fmt.Errorf("%w (the single-buffer build was refused first: %v)", multiErr, reason)
}

func attachMode(prog *ebpf.Program, h *Hook, mode Mode) (link.Link, error) {
	flags := link.XDPDriverMode
	if mode == ModeGeneric {
		flags = link.XDPGenericMode
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: h.Index, Flags: flags})
	switch {
	case err == nil:
		return l, nil
	case errors.Is(err, unix.EBUSY), errors.Is(err, unix.EEXIST):
		return nil, &XDPBusyError{Hook: *h, Mode: mode}
	case errors.Is(err, unix.EPERM):
		return nil, fmt.Errorf("attach %s: %w", h.Interface, bpf.ErrPrivileges)
	}
	// cilium/ebpf's words ("failed to attach link: create link: ...")
	// say nothing the errno does not.
	var errno unix.Errno
	if errors.As(err, &errno) {
		return nil, fmt.Errorf("attach %s in %s mode: refused (%w)", h.Interface, mode, errno)
	}
	return nil, fmt.Errorf("attach %s in %s mode: %w", h.Interface, mode, err)
}
