package capture

import (
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/ringcap/ringcap/bpf/bpftest"
)

// The netdev family says which drivers run XDP themselves and hand XDP
// the VLAN tags they take out: veth does both (Linux 6.8), loopback
// neither; a bond would run it on its slaves' frames.
func TestDriverXDP(t *testing.T) {
	bpftest.InNewNetns(t)
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "rt-a"}, PeerName: "rt-b"}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		want xdpSupport
	}{{"lo", xdpSupport{refusal: "its driver offers no native XDP here"}}, {"rt-a", xdpSupport{vlanTags: true}}} {
		l, err := netlink.LinkByName(tt.name)
		if err != nil {
			t.Fatal(err)
		}
		if got := driverXDP(l); got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
	bond := &netlink.Bond{LinkAttrs: netlink.LinkAttrs{Name: "rt-bond"}}
	if got := driverXDP(bond); got.refusal != bondNotXDP {
		t.Errorf("a bond: %+v, want the refusal %q", got, bondNotXDP)
	}
}
