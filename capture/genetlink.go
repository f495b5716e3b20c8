package capture

import (
	"fmt"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// genlFamily is a generic netlink family, asked what vishvananda/netlink
// has no call for.
type genlFamily struct {
	name    string
	id      uint16
	version uint8
}

// genlFamilyByName looks the family up; a kernel without it says so with
// an error.
func genlFamilyByName(name string) (genlFamily, error) {
	fam, err := netlink.GenlFamilyGet(name)
	if err != nil {
		return genlFamily{}, err
	}
	return genlFamily{name: name, id: fam.ID, version: uint8(fam.Version)}, nil
}

// request sends cmd with attrs and returns the attributes of the first
// answer.
func (f genlFamily) request(cmd uint8, attrs ...*nl.RtAttr) ([]syscall.NetlinkRouteAttr, error) {
	req := nl.NewNetlinkRequest(int(f.id), 0)
	req.AddData(genlHeader{cmd: cmd, version: f.version})
	for _, a := range attrs {
		req.AddData(a)
	}
	msgs, err := req.Execute(unix.NETLINK_GENERIC, 0)
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 || len(msgs[0]) < genlHeaderLen {
		return nil, fmt.Errorf("%s family: no answer", f.name)
	}
	return nl.ParseRouteAttr(msgs[0][genlHeaderLen:])
}

// genlHeaderLen is the length of a generic netlink message header.
const genlHeaderLen = 4

// genlHeader is a generic netlink message header: vishvananda/netlink's
// nl.Genlmsg serializes fewer bytes than its length says, which the
// kernel refuses (EINVAL), so this one is written out.
type genlHeader struct{ cmd, version uint8 }

func (g genlHeader) Len() int          { return genlHeaderLen }
func (g genlHeader) Serialize() []byte { return []byte{g.cmd, g.version, 0, 0} }
