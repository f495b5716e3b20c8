package capture

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf"
)

var errBusy = errors.New("already has an XDP program")

// attachedXDP names the XDP program attached to the interface, or is ""
// if there is none.
func attachedXDP(index int) (string, error) {
	l, err := netlink.LinkByIndex(index)
	if err != nil {
		return "", fmt.Errorf("read interface %d: %w", index, err)
	}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached {
		return "", nil
	}
	return xdpProgramName(x.ProgId), nil
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

// The netdev generic netlink family (Linux 6.3), from
// include/uapi/linux/netdev.h: NETDEV_CMD_DEV_GET, NETDEV_A_DEV_IFINDEX,
// NETDEV_A_DEV_XDP_FEATURES and its NETDEV_XDP_ACT_BASIC (the driver
// runs XDP itself), NETDEV_A_DEV_XDP_RX_METADATA_FEATURES and its
// NETDEV_XDP_RX_METADATA_VLAN_TAG.
const (
	netdevCmdDevGet         = 1
	netdevAttrIfindex       = 1
	netdevAttrXDPFeatures   = 3
	netdevAttrRxMetadata    = 5
	netdevXDPActBasic       = 1
	netdevRxMetadataVLANTag = 4
)

// genlHeader is a generic netlink message header: vishvananda/netlink's
// nl.Genlmsg serializes fewer bytes than its length says, which the
// kernel refuses (EINVAL), so this one is written out.
type genlHeader struct{ cmd, version uint8 }

func (g genlHeader) Len() int          { return 4 }
func (g genlHeader) Serialize() []byte { return []byte{g.cmd, g.version, 0, 0} }

// netdevInfo is what the netdev family says of a device's XDP.
type netdevInfo struct {
	xdpFeatures, rxMetadata uint64
}

// netdevDevice asks the netdev family about the interface. A kernel
// without the family (before 6.3) says nothing: no features.
func netdevDevice(index int) (netdevInfo, error) {
	var info netdevInfo
	fam, err := netlink.GenlFamilyGet("netdev")
	if err != nil {
		return info, err
	}
	req := nl.NewNetlinkRequest(int(fam.ID), 0)
	req.AddData(genlHeader{cmd: netdevCmdDevGet, version: 1})
	req.AddData(nl.NewRtAttr(netdevAttrIfindex, nl.Uint32Attr(uint32(index))))
	msgs, err := req.Execute(unix.NETLINK_GENERIC, 0)
	if err != nil {
		return info, err
	}
	if len(msgs) == 0 || len(msgs[0]) < 4 {
		return info, fmt.Errorf("netdev family: no answer for interface %d", index)
	}
	attrs, err := nl.ParseRouteAttr(msgs[0][4:])
	if err != nil {
		return info, err
	}
	for _, a := range attrs {
		if len(a.Value) < 4 {
			continue
		}
		// The kernel sends these as 64-bit values (uint, variable
		// length); the flags all sit in the low word.
		v := uint64(nl.NativeEndian().Uint32(a.Value[:4]))
		switch a.Attr.Type {
		case netdevAttrXDPFeatures:
			info.xdpFeatures = v
		case netdevAttrRxMetadata:
			info.rxMetadata = v
		}
	}
	return info, nil
}

// rxVLANTags says whether the interface's driver hands XDP programs the
// VLAN tags it takes out of frames (bpf_xdp_metadata_rx_vlan_tag), as the
// kernel's netdev family tells.
func rxVLANTags(index int) bool {
	info, err := netdevDevice(index)
	return err == nil && info.rxMetadata&netdevRxMetadataVLANTag != 0
}

// maxBound bounds the XDP programs bound to a device: each is a program
// of its own, where every other hook shares one instance of its build.
// Past it, an interface gets the unbound build, without the driver's VLAN
// tags (Hook.TagsCapped).
const maxBound = 16

// attachXDP attaches the cheapest XDP build that the interface takes in
// the capture's mode and fills in how h is attached: in native mode the
// single-buffer build (if the process may load it) where the driver
// accepts it, else the multi-buffer one, both bound to the device where
// the driver hands XDP the VLAN tags it takes out of frames; in generic
// mode always the multi-buffer build, since the kernel would copy every
// multi-buffer socket buffer into one for a single-buffer program, and
// unbound: generic mode takes no bound program.
func (c *Capture) attachXDP(h *Hook) (link.Link, error) {
	h.XDP = true
	if c.cfg.Mode == ModeGeneric {
		return attachBuild(c.objs, h, bpf.XDP, false, ModeGeneric)
	}
	// Only a driver that hands XDP the tags gets a bound program: a
	// bound one is refused in generic mode, should native fail.
	bound := rxVLANTags(h.Index)
	if bound && c.objs.DeviceBound() >= maxBound {
		bound, h.TagsCapped = false, true
	}
	var linearErr error
	if c.perfmon {
		// A driver refuses the single-buffer build when its MTU would
		// need multi-buffer frames (veth: "Peer MTU is too large to
		// set XDP").
		l, err := attachBuild(c.objs, h, bpf.XDPLinear, bound, ModeNative)
		if err == nil || errors.Is(err, errBusy) || errors.Is(err, bpf.ErrPrivileges) {
			return l, err
		}
		linearErr = err
	}
	l, err := attachBuild(c.objs, h, bpf.XDP, bound, ModeNative)
	if err != nil {
		err = bothBuilds(err, linearErr)
	}
	if err == nil || c.cfg.Mode == ModeNative || errors.Is(err, errBusy) || errors.Is(err, bpf.ErrPrivileges) {
		return l, err
	}
	l, gerr := attachBuild(c.objs, h, bpf.XDP, false, ModeGeneric)
	if gerr != nil {
		return nil, fmt.Errorf("%w (native mode failed too: %v)", gerr, err)
	}
	return l, nil
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
		return nil, err
	}
	h.Mode, h.MultiBuffer, h.Tags = mode, build == bpf.XDP, bound
	return l, nil
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
		return nil, fmt.Errorf("attach %s in %s mode: the interface %w; `ip link show %s` names it, and --hook tc captures beside it",
			h.Interface, mode, errBusy, h.Interface)
	case errors.Is(err, unix.EPERM):
		return nil, fmt.Errorf("attach %s: %w", h.Interface, bpf.ErrPrivileges)
	}
	return nil, fmt.Errorf("attach %s in %s mode: %w", h.Interface, mode, err)
}
