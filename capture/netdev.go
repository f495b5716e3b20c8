package capture

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
)

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

// netdevInfo is what the netdev family says of a device's XDP.
type netdevInfo struct {
	xdpFeatures, rxMetadata uint64
}

// netdevDevice asks the netdev family about the interface. A kernel
// without the family (before 6.3) says nothing: no features.
func netdevDevice(index int) (netdevInfo, error) {
	var info netdevInfo
	fam, err := genlFamilyByName("netdev")
	if err != nil {
		return info, err
	}
	attrs, err := fam.request(netdevCmdDevGet, nl.NewRtAttr(netdevAttrIfindex, nl.Uint32Attr(uint32(index))))
	if err != nil {
		return info, fmt.Errorf("interface %d: %w", index, err)
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

// xdpSupport is what the kernel says of an interface's driver and XDP.
type xdpSupport struct {
	// refusal says why the driver would not run ringcap's program in
	// native mode, in words for the first line; "" where it would, or
	// where ringcap cannot tell beforehand (the attach then tells).
	refusal string
	// vlanTags says the driver hands XDP programs the VLAN tags it takes
	// out of frames (bpf_xdp_metadata_rx_vlan_tag).
	vlanTags bool
}

// driverXDP asks the kernel's netdev family, and a virtio device's
// feature bits, what the interface's driver does with XDP.
func driverXDP(l netlink.Link) xdpSupport {
	a := l.Attrs()
	if l.Type() == "bond" {
		return xdpSupport{refusal: bondNotXDP}
	}
	dev, err := netdevDevice(a.Index)
	support := xdpSupport{vlanTags: err == nil && dev.rxMetadata&netdevRxMetadataVLANTag != 0}
	if err == nil && dev.xdpFeatures&netdevXDPActBasic == 0 {
		support.refusal = "its driver offers no native XDP here"
	} else {
		support.refusal = virtioRefusal(a.Index, a.Name)
	}
	return support
}

// tcxPreferred is why HookAuto captures an interface's received frames
// at tcx ingress though its driver runs XDP itself, if it does. veth
// runs XDP on the socket buffers it receives, converted (copied where
// they lack XDP's headroom) and passed through NAPI, which attaching XDP
// turns on for the pair: tcx ingress costs less (ringbench --hooks,
// docs/performance.md).
func tcxPreferred(l netlink.Link) Note {
	if l.Type() == "veth" {
		return Note{Text: vethNotXDP, Unless: SettingModeNative}
	}
	return Note{}
}

const (
	vethNotXDP = "on veth, tcx ingress costs less than XDP, which runs on converted socket buffers"
	// A bond runs XDP programs in its slaves' drivers, on the slaves'
	// frames: the program would find no slot for their interfaces.
	bondNotXDP = "a bond runs XDP on its slaves' frames, which ringcap would not find the bond's: capture on the slaves for XDP"
)

// The virtio feature bits (include/uapi/linux/virtio_net.h) that make
// virtio_net refuse XDP: offloads the host applies to received frames
// (GRO_HW, checksums), unless the device lets the guest turn them off
// (VIRTIO_NET_F_CTRL_GUEST_OFFLOADS). The kernel's extended ack says so
// ("Can't set XDP while host is implementing GRO_HW/CSUM"), but no
// bpf_link attach carries one.
const virtioCtrlGuestOffloads = 2

var virtioGuestOffloads = []int{1, 7, 8, 9, 10, 54, 55} // GUEST_CSUM, _TSO4, _TSO6, _ECN, _UFO, _USO4, _USO6

// virtioRefusal is why virtio_net would refuse XDP on the interface, or
// "" if it would not, or the interface is no virtio_net device, or sysfs
// shows another namespace's.
func virtioRefusal(index int, name string) string {
	dir := filepath.Join("/sys/class/net", name)
	if idx, err := os.ReadFile(filepath.Join(dir, "ifindex")); err != nil || strings.TrimSpace(string(idx)) != strconv.Itoa(index) {
		return ""
	}
	driver, err := filepath.EvalSymlinks(filepath.Join(dir, "device", "driver"))
	if err != nil || filepath.Base(driver) != "virtio_net" {
		return ""
	}
	bits, err := os.ReadFile(filepath.Join(dir, "device", "features"))
	if err != nil {
		return ""
	}
	has := func(bit int) bool { return bit < len(bits) && bits[bit] == '1' }
	if has(virtioCtrlGuestOffloads) {
		return ""
	}
	for _, bit := range virtioGuestOffloads {
		if has(bit) {
			return "virtio_net refuses native XDP here: the host applies GRO_HW or checksum offloads to received frames, which the guest cannot turn off"
		}
	}
	return ""
}
