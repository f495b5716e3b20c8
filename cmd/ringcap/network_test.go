package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/cmd/internal/veth"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// vethPair is the test network (cmd/internal/veth): two network
// namespaces joined by two veth pairs, the sender with 198.18.0.1 on txIf
// and 198.18.0.5 on txIf2, the receiver with 198.18.0.2 on rxIf and
// 198.18.0.6 on rxIf2. Test traffic never leaves them.
type vethPair struct {
	*veth.Network
}

// vethHook is how ringcap captures a veth's received frames by default:
// at tcx ingress, which costs less there than XDP, and vethNote why.
const (
	vethNote = "on veth, tcx ingress costs less than XDP, which runs on converted socket buffers: --mode native attaches XDP"
	vethHook = "tcx ingress; " + vethNote
)

const (
	ifPrefix = "rc"
	txIf     = ifPrefix + "-tx"
	rxIf     = ifPrefix + "-rx"
	rxAddr   = "198.18.0.2"
	rxIf2    = ifPrefix + "-rx2"
	rxAddr2  = "198.18.0.6"
)

var nsSeq int

// newVethPair makes two veth pairs with MTU 9000, on which native mode
// needs the multi-buffer program.
func newVethPair(t *testing.T) *vethPair {
	t.Helper()
	return newVethPairMTU(t, 9000)
}

func newVethPairMTU(t *testing.T, mtu int) *vethPair {
	t.Helper()
	return newNetwork(t, veth.Config{Links: 2, MTU: mtu})
}

// newNetwork builds the network cfg describes, named for this test
// process, and removes it when t ends.
func newNetwork(t *testing.T, cfg veth.Config) *vethPair {
	t.Helper()
	bpftest.RequirePrivileges(t)
	bpftest.RequireTool(t, "ip")
	bpftest.RequireTool(t, "ping")
	nsSeq++
	cfg.Name = fmt.Sprintf("ringcap-%d-%d", os.Getpid(), nsSeq)
	cfg.Prefix = ifPrefix
	n, err := veth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return &vethPair{n}
}

// inNetns runs f on a thread in the named network namespace (veth.Do),
// and fails t if f fails: sockets, programs attached and links made there
// stay there after f returns.
func inNetns(t *testing.T, name string, f func() error) {
	t.Helper()
	if err := veth.Do(name, f); err != nil {
		t.Fatal(err)
	}
}

// ifindex is the index of interface name in namespace ns.
func ifindex(t *testing.T, ns, name string) int {
	t.Helper()
	var idx int
	inNetns(t, ns, func() error {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		idx = ifc.Index
		return nil
	})
	return idx
}

// ping sends one echo request of payload bytes from tx to rx over the
// first pair and waits for the reply. Its L3 length is payload + 28.
func (p *vethPair) ping(t *testing.T, payload int) {
	t.Helper()
	p.pingAddr(t, rxAddr, payload)
}

func (p *vethPair) pingAddr(t *testing.T, addr string, payload int) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", p.Tx,
		"ping", "-c", "1", "-W", "2", "-s", strconv.Itoa(payload), addr).CombinedOutput()
	if err != nil {
		t.Fatalf("ping -s %d: %v\n%s", payload, err, out)
	}
}

// send sends the frames of the pcap file path from the sending end with
// tcpreplay, and returns once the receiving end has counted as many: the
// interface counts a frame once the program has run on it.
func (p *vethPair) send(t *testing.T, path string) {
	t.Helper()
	bpftest.RequireTool(t, "tcpreplay")
	frames := uint64(len(pcapngtest.ReadPcap(t, path)))
	before, err := p.RxPackets(0)
	if err != nil {
		t.Fatal(err)
	}
	if msg, err := exec.Command("ip", "netns", "exec", p.Tx, "tcpreplay", "-q", "-i", txIf, path).CombinedOutput(); err != nil {
		t.Fatalf("tcpreplay: %v\n%s", err, msg)
	}
	if !waitFor(10*time.Second, func() bool { n, _ := p.RxPackets(0); return n >= before+frames }) {
		t.Fatalf("%s did not receive the %d frames sent", rxIf, frames)
	}
}

// xdpAttached reports whether any XDP program is on the receiving end.
func (p *vethPair) xdpAttached(t *testing.T) bool {
	t.Helper()
	out, err := exec.Command("ip", "-n", p.Rx, "link", "show", rxIf).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show: %v\n%s", err, out)
	}
	return bytes.Contains(out, []byte("xdp"))
}

// xdpProgram returns the name of the XDP program on the receiving end.
func (p *vethPair) xdpProgram(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "-d", "-n", p.Rx, "link", "show", rxIf).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -d link show: %v\n%s", err, out)
	}
	_, after, ok := strings.Cut(string(out), "prog/xdp ")
	if !ok {
		return ""
	}
	_, after, _ = strings.Cut(after, " name ")
	name, _, _ := strings.Cut(after, " ")
	return name
}

// runIP runs ip with args, and fails t if it fails.
func runIP(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// waitFor polls cond until it holds or timeout passes, and says whether
// it held. Tests wait on a condition, never for a fixed time: a loaded
// machine may take longer, and only a condition that never comes true is
// a failure.
func waitFor(timeout time.Duration, cond func() bool) bool {
	for end := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// noXDPLeft waits for the kernel to release the program after ringcap
// exited, and fails t if it stays.
func (p *vethPair) noXDPLeft(t *testing.T) {
	t.Helper()
	if !waitFor(10*time.Second, func() bool { return !p.xdpAttached(t) }) {
		t.Errorf("an XDP program is still attached to %s 10s after ringcap exited", rxIf)
	}
}
