package capture

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
)

// The netdev family says which drivers hand XDP the VLAN tags they take
// out: veth does (Linux 6.8), loopback has no native XDP at all.
func TestRxVLANTags(t *testing.T) {
	inNewNetns(t)
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "rt-a"}, PeerName: "rt-b"}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		want bool
	}{{"lo", false}, {"rt-a", true}} {
		ifc, err := net.InterfaceByName(tt.name)
		if err != nil {
			t.Fatal(err)
		}
		if got := rxVLANTags(ifc.Index); got != tt.want {
			t.Errorf("%s: tags %v, want %v", tt.name, got, tt.want)
		}
	}
}
