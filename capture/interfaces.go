package capture

import (
	"fmt"
	"net"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// InterfaceInfo is an interface as `ringcap interfaces` lists it: what it
// is, and where ringcap would capture on it.
type InterfaceInfo struct {
	Index  int
	Name   string
	State  string // operational state: up, down, unknown (loopback)...
	MTU    int
	Driver string // ethtool's driver name, else the link type
	// WhyNotXDP says why HookAuto would capture the interface's
	// received frames at tcx ingress rather than in native XDP, if it
	// would.
	WhyNotXDP Note
	// Attached names the XDP program already on the interface, if any:
	// ringcap would capture received frames at tcx ingress, behind it.
	Attached string
}

// Inbound says where ringcap's default hook choice (HookAuto) would
// capture the interface's received frames, why in noteText's words
// (Note.String: the library's own).
func (i InterfaceInfo) Inbound(noteText func(Note) string) string {
	switch {
	case i.Attached != "":
		return "tcx ingress, behind XDP program " + i.Attached
	case i.WhyNotXDP.Text != "":
		return "tcx ingress (" + noteText(i.WhyNotXDP) + ")"
	}
	return "XDP native mode"
}

// ListInterfaces lists the interfaces of the network namespace, by index.
func ListInterfaces() ([]InterfaceInfo, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	// ethtool's ioctls take any socket.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	defer unix.Close(fd)
	var out []InterfaceInfo
	for _, l := range links {
		a := l.Attrs()
		info := InterfaceInfo{Index: a.Index, Name: a.Name, State: a.OperState.String(), MTU: a.MTU, Driver: l.Type()}
		if a.Flags&net.FlagLoopback != 0 {
			info.Driver = "loopback" // ethtool knows no driver for it
		}
		if drv, err := unix.IoctlGetEthtoolDrvinfo(fd, a.Name); err == nil {
			if name := unix.ByteSliceToString(drv.Driver[:]); name != "" {
				info.Driver = name
			}
		}
		if info.WhyNotXDP = tcxPreferred(l); info.WhyNotXDP.Text == "" {
			info.WhyNotXDP = Note{Text: driverXDP(l).refusal}
		}
		if x := a.Xdp; x != nil && x.Attached {
			info.Attached = xdpProgramName(x.ProgId)
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(x, y InterfaceInfo) int { return x.Index - y.Index })
	return out, nil
}
