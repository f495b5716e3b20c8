package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// attachIn attaches a program to interface ifname of namespace ns with
// attach, given its index there, until t ends.
func attachIn(t *testing.T, ns, ifname string, attach func(index int) (link.Link, error)) {
	t.Helper()
	idx := ifindex(t, ns, ifname)
	inNetns(t, ns, func() error {
		l, err := attach(idx)
		if err != nil {
			return fmt.Errorf("attach to %s: %w", ifname, err)
		}
		t.Cleanup(func() { l.Close() })
		return nil
	})
}

// holdXDP attaches otherXDP to the receiving end in mode flags, as
// another tool would, and returns it.
func (p *vethPair) holdXDP(t *testing.T, flags link.XDPAttachFlags) *ebpf.Program {
	t.Helper()
	prog := otherXDP(t)
	attachIn(t, p.Rx, rxIf, func(idx int) (link.Link, error) {
		return link.AttachXDP(link.XDPOptions{Program: prog, Interface: idx, Flags: flags})
	})
	return prog
}

// otherXDP is an XDP program of someone else's that passes every frame,
// the stand-in for a load balancer or a DDoS filter.
func otherXDP(t *testing.T) *ebpf.Program {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "other_pass",
		Type:         ebpf.XDP,
		Flags:        1 << 5, // BPF_F_XDP_HAS_FRAGS: veth at MTU 9000 needs it in native mode
		License:      "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

// tcxPrograms counts the programs at the receiving end's tcx hook.
func (p *vethPair) tcxPrograms(t *testing.T, attach ebpf.AttachType) int {
	t.Helper()
	idx := ifindex(t, p.Rx, rxIf)
	var n int
	inNetns(t, p.Rx, func() error {
		res, err := link.QueryPrograms(link.QueryOptions{Target: idx, Attach: attach})
		if err != nil {
			return err
		}
		n = len(res.Programs)
		return nil
	})
	return n
}

// With another XDP program on the interface, ringcap captures inbound
// frames at tcx ingress instead, says so, records the same, and leaves
// the other program where it was, after SIGINT and after SIGKILL.
func TestBesideOtherXDP(t *testing.T) {
	for _, mode := range []struct {
		name  string
		flags link.XDPAttachFlags
	}{{"generic", link.XDPGenericMode}, {"native", link.XDPDriverMode}} {
		for _, sig := range []os.Signal{os.Interrupt, os.Kill} {
			t.Run(mode.name+"/"+sig.String(), func(t *testing.T) {
				p := newVethPair(t)
				p.holdXDP(t, mode.flags)
				path := filepath.Join(t.TempDir(), "beside.pcapng")
				// An expression with loads at constant offsets (the
				// EtherType, the addresses) and at X+k (the ICMP
				// type): behind a generic-mode program, tc's data
				// starts after the MAC header (see mac_gap in
				// bpf/ringcap.c).
				r := p.startRecord(t, "-Q", "inout", "-i", rxIf, "-w", path,
					"host "+rxAddr+" and (icmp[icmptype] = icmp-echo or icmp[icmptype] = icmp-echoreply)")
				want := "capturing on " + rxIf + " (inbound, tcx ingress; behind XDP program other_pass (id "
				if !strings.Contains(r.errors(), want) || !strings.Contains(r.errors(), "frames it drops, redirects or transmits are not seen; outbound, tcx egress)") {
					t.Errorf("first line does not say it captures behind the other program:\n%s", r.errors())
				}
				p.ping(t, 2000)
				p.ping(t, 100)
				if code := r.stop(t, sig); sig == os.Interrupt && code != 0 {
					t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
				}
				if got := p.xdpProgram(t); got != "other_pass" {
					t.Errorf("after ringcap, the interface's XDP program is %q, want other_pass", got)
				}
				for _, attach := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
					if !waitFor(10*time.Second, func() bool { return p.tcxPrograms(t, attach) == 0 }) {
						t.Errorf("a tcx program is left at %v after ringcap exited", attach)
					}
				}
				if sig != os.Interrupt {
					return
				}
				rows := pcapngtest.Fields(t, path, "frame.len", "icmp.type", "frame.packet_flags_direction")
				wantRows := [][]string{{"2042", "8", "0x00000001"}, {"2042", "0", "0x00000002"}}
				if fmt.Sprint(rows) != fmt.Sprint(wantRows) {
					t.Errorf("frames (length, icmp type, direction) = %v, want %v", rows, wantRows)
				}
			})
		}
	}
}

// Behind a generic-mode XDP program, tcx ingress gets data that starts at
// the network header (see mac_gap in bpf/ringcap.c). Untagged, and with
// tags in skb->vlan_tci, every snap length, down to part of the MAC
// header, records what tcpdump records, cut to its length, and the
// expression sees the tag.
func TestBehindGenericXDP(t *testing.T) {
	for _, tagged := range []bool{false, true} {
		t.Run(fmt.Sprintf("tagged=%v", tagged), func(t *testing.T) { behindGenericXDP(t, tagged) })
	}
}

func behindGenericXDP(t *testing.T, tagged bool) {
	p := newVethPairMTU(t, 1500)
	p.holdXDP(t, link.XDPGenericMode)
	expr := "icmp[icmptype] = icmp-echo"
	if tagged {
		expr = "vlan 100 and icmp"
		p.pushTags(t)
	}
	dir := t.TempDir()
	ref := filepath.Join(dir, "tcpdump.pcap")
	stopTcpdump := p.tcpdumpRecord(t, ref, expr)
	snaplens := []int{0, 10, 13, 16, 17, 64}
	procs := make([]*ringcapProc, len(snaplens))
	for i, n := range snaplens {
		procs[i] = p.start(t, "-w", filepath.Join(dir, fmt.Sprintf("s%d.pcapng", n)), "--all", "-s", strconv.Itoa(n), expr)
	}
	for _, payload := range []int{100, 1000} {
		exec.Command("ip", "netns", "exec", p.Tx, "ping", "-c", "1", "-W", "0.2", "-s", strconv.Itoa(payload), rxAddr).Run()
	}
	if !waitFor(10*time.Second, func() bool { n, _ := pcapngtest.Count(t, ref, true); return n >= 2 }) {
		t.Fatal("tcpdump did not see the 2 tagged echo requests")
	}
	stopTcpdump()
	want := pcapngtest.ReadPcap(t, ref)
	for i, n := range snaplens {
		if code := procs[i].stop(t, os.Interrupt); code != 0 {
			t.Fatalf("ringcap -s %d exited with %d:\n%s", n, code, procs[i].errors())
		}
		got := pcapngtest.Read(t, filepath.Join(dir, fmt.Sprintf("s%d.pcapng", n))).Packets
		if len(got) != len(want) {
			t.Errorf("-s %d: %d frames, tcpdump %d:\n%s", n, len(got), len(want), procs[i].errors())
			continue
		}
		for j := range got {
			w := want[j].Data
			if n > 0 && n < len(w) {
				w = w[:n]
			}
			if !bytes.Equal(got[j].Data, w) {
				t.Errorf("-s %d: frame %d is %x, tcpdump's %x", n, j, got[j].Data[:min(20, len(got[j].Data))], w[:min(20, len(w))])
			}
		}
	}
}
