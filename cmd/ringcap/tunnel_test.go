package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// tunnel is an overlay between the test's namespaces over the first veth
// pair: the device type and its arguments, and the underlay's addresses.
type tunnel struct {
	name             string
	kind             string
	args             []string // after "type KIND"; LOCAL, REMOTE and DEV are each end's
	txUnder, rxUnder string
}

// The overlay's addresses, which the TCP exchange runs between.
const overlayTx, overlayRx = "198.19.0.1", "198.19.0.2"

// addOverlay makes the tunnel's device rc-ov at mtu in both namespaces,
// with the overlay's addresses.
func (p *vethPair) addOverlay(t *testing.T, tn tunnel, mtu int) {
	t.Helper()
	if tn.txUnder != "198.18.0.1" {
		// An IPv6 underlay: veth.New turns IPv6 off on the links.
		for _, end := range []struct{ ns, ifc, addr string }{{p.Tx, txIf, tn.txUnder}, {p.Rx, rxIf, tn.rxUnder}} {
			runIP(t, "netns", "exec", end.ns, "sysctl", "-qw", "net.ipv6.conf."+end.ifc+".disable_ipv6=0")
			runIP(t, "-n", end.ns, "addr", "add", end.addr+"/64", "dev", end.ifc, "nodad")
		}
	}
	for _, end := range []struct{ ns, dev, local, remote, addr string }{
		{p.Tx, txIf, tn.txUnder, tn.rxUnder, overlayTx}, {p.Rx, rxIf, tn.rxUnder, tn.txUnder, overlayRx},
	} {
		args := []string{"-n", end.ns, "link", "add", "rc-ov", "type", tn.kind}
		each := strings.NewReplacer("LOCAL", end.local, "REMOTE", end.remote, "DEV", end.dev)
		for _, a := range tn.args {
			args = append(args, each.Replace(a))
		}
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			if strings.Contains(string(out), "Unknown device type") {
				t.Skipf("this kernel has no %s devices", tn.kind)
			}
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		runIP(t, "netns", "exec", end.ns, "sysctl", "-qw", "net.ipv6.conf.rc-ov.disable_ipv6=1")
		runIP(t, "-n", end.ns, "link", "set", "rc-ov", "mtu", strconv.Itoa(mtu), "up")
		runIP(t, "-n", end.ns, "addr", "add", end.addr+"/30", "dev", "rc-ov")
	}
}

// An overlay at MTU 1500 over an underlay at 9000 with TSO: each segment
// of a TCP bulk send over the overlay is 1500 bytes of inner L3, more than
// 1500 on the wire once encapsulated, and every tunnel packet of it is
// oversize: ringcap records at the underlay's egress as many as tcpdump
// sees longer than 1514 bytes there, and at the receiver's ingress as
// many as tcpdump sees there. The sender's veth hands its GSO packets to
// the receiver's whole; with the sender segmenting tunnel packets itself
// and the receiver's GRO on, the receiver's ingress sees GRO packets
// instead, judged the same way. At MTU 1400 the wire's frames fit, and
// ringcap records none, though the packets are as long.
func TestTunnelGSO(t *testing.T) {
	bpftest.RequireTool(t, "tcpdump")
	bpftest.RequireTool(t, "ethtool")
	tunnels := []tunnel{
		{"vxlan", "vxlan", []string{"id", "42", "local", "LOCAL", "remote", "REMOTE", "dstport", "4789", "dev", "DEV"}, "198.18.0.1", "198.18.0.2"},
		{"vxlan over IPv6", "vxlan", []string{"id", "42", "local", "LOCAL", "remote", "REMOTE", "dstport", "4789"}, "2001:2::1", "2001:2::2"},
		{"geneve", "geneve", []string{"id", "42", "remote", "REMOTE"}, "198.18.0.1", "198.18.0.2"},
		{"gretap", "gretap", []string{"local", "LOCAL", "remote", "REMOTE"}, "198.18.0.1", "198.18.0.2"},
	}
	for _, tn := range tunnels {
		for _, gro := range []bool{false, true} {
			for _, mtu := range []int{1500, 1400} {
				name := tn.name + "/gso"
				if gro {
					name = tn.name + "/gro"
				}
				t.Run(name+"/mtu="+strconv.Itoa(mtu), func(t *testing.T) {
					tunnelSend(t, tn, gro, mtu)
				})
			}
		}
	}
}

func tunnelSend(t *testing.T, tn tunnel, gro bool, mtu int) {
	p := newVethPairMTU(t, 9000)
	p.addOverlay(t, tn, mtu)
	if gro {
		// veth merges in GRO only what a sender without TSO hands it
		// (veth_skb_is_eligible_for_gro), and turns GRO on when the
		// feature changes.
		runIP(t, "netns", "exec", p.Tx, "ethtool", "-K", txIf, "tso", "off")
		runIP(t, "netns", "exec", p.Rx, "ethtool", "-K", rxIf, "gro", "off")
		runIP(t, "netns", "exec", p.Rx, "ethtool", "-K", rxIf, "gro", "on")
	}
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	out := startCommand(t, "ip", "netns", "exec", p.Tx, binary, "record", "-Q", "out", "-i", txIf, "-w", path("egress.pcapng"))
	in := p.startRecord(t, "-Q", "in", "-i", rxIf, "-w", path("ingress.pcapng"))
	// With GRO the sender's veth segments after tc egress, where
	// tcpdump sees the segments and ringcap the packet: tcpdump is the
	// reference at the ingress only.
	stopOut := func() {}
	if !gro {
		stopOut = p.tcpdumpAt(t, p.Tx, txIf, "out", path("egress.pcap"), "greater 1515")
	}
	stopIn := p.tcpdumpAt(t, p.Rx, rxIf, "in", path("ingress.pcap"), "greater 1515")
	p.exchangeWith(t, overlayRx, pcapngtest.Pattern(3<<20, 1), pcapngtest.Pattern(1000, 2))
	stopOut()
	stopIn()
	for _, r := range []*ringcapProc{out, in} {
		if code := r.stop(t, os.Interrupt); code != 0 {
			t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
		}
	}
	// The packets were longer than the wire's frames: GSO packets, or,
	// with GRO, merged ones. (At MTU 1400, tcpdump's filter keeps those
	// only.)
	longest := 0
	for _, row := range pcapngtest.Fields(t, path("ingress.pcap"), "frame.len") {
		n, _ := strconv.Atoi(row[0])
		longest = max(longest, n)
	}
	if longest < 3000 {
		t.Fatalf("the longest packet at %s's ingress was %d bytes: the bulk send was not segmented late, or not merged", rxIf, longest)
	}
	hooks := []struct{ name, ours, tcpdumps string }{{"ingress", "ingress.pcapng", "ingress.pcap"}}
	if !gro {
		hooks = append(hooks, struct{ name, ours, tcpdumps string }{"egress", "egress.pcapng", "egress.pcap"})
	}
	for _, h := range hooks {
		long, _ := pcapngtest.Count(t, path(h.tcpdumps), false)
		want := long
		if mtu == 1400 {
			want = 0
		}
		if n, _ := pcapngtest.Count(t, path(h.ours), false); n != want || long == 0 {
			t.Errorf("ringcap recorded %d tunnel packets at the underlay's %s, want %d (tcpdump saw %d over 1514 bytes)", n, h.name, want, long)
		}
	}
}
