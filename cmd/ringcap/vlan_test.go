package main

import (
	"bytes"
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

// pushTags attaches vlanPusher to the sending end's tcx egress.
func (p *vethPair) pushTags(t *testing.T) {
	t.Helper()
	prog := vlanPusher(t)
	attachIn(t, p.Tx, txIf, func(idx int) (link.Link, error) {
		return link.AttachTCX(link.TCXOptions{Program: prog, Interface: idx, Attach: ebpf.AttachTCXEgress})
	})
}

// vlanPusher is a tcx egress program for the sender that moves every IPv4
// frame's VLAN tag 100 into skb->vlan_tci, as a NIC's rx-vlan-offload
// leaves it: the frame's bytes carry no tag.
func vlanPusher(t *testing.T) *ebpf.Program {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "vlan_push",
		Type:    ebpf.SchedCLS,
		License: "MIT",
		Instructions: asm.Instructions{
			// skb->protocol, network order: IPv4 only, so that ARP
			// still resolves.
			asm.LoadMem(asm.R2, asm.R1, 16, asm.Word),
			asm.JNE.Imm(asm.R2, 0x0008, "next"),
			asm.Mov.Imm(asm.R2, 0x0081), // htons(ETH_P_8021Q)
			asm.Mov.Imm(asm.R3, 100),
			asm.FnSkbVlanPush.Call(),
			asm.Mov.Imm(asm.R0, -1).WithSymbol("next"), // TCX_NEXT
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

// Frames whose tag travels in skb->vlan_tci reach ringcap untagged; it
// puts the tag back at XDP (the program bound to the device asks the
// driver) and at tc, and `vlan 100 and icmp` selects them: the same frames
// as tcpdump's, byte for byte.
func TestOffloadedTags(t *testing.T) {
	for _, hook := range []string{"xdp", "tc"} {
		t.Run(hook, func(t *testing.T) {
			p := newVethPairMTU(t, 1500)
			p.pushTags(t)
			const expr = "vlan 100 and icmp"
			dir := t.TempDir()
			path, ref := filepath.Join(dir, "tags.pcapng"), filepath.Join(dir, "tcpdump.pcap")
			stopTcpdump := p.tcpdumpRecord(t, ref, expr)
			r := p.start(t, "-w", path, "--all", "-s", "0", "--hook", hook, "--mode", "native", expr)
			if strings.Contains(r.errors(), "may be missing") {
				t.Errorf("ringcap says tags may be missing where it gets them back:\n%s", r.errors())
			}
			// The tagged frames find no VLAN device: the receiver
			// drops them after the hooks, and ping hears no reply.
			for _, payload := range []int{100, 1000} {
				exec.Command("ip", "netns", "exec", p.Tx, "ping", "-c", "1", "-W", "0.2", "-s", strconv.Itoa(payload), rxAddr).Run()
			}
			want := 2
			if !waitFor(10*time.Second, func() bool { n, _ := pcapngtest.Count(t, ref, true); return n >= want }) {
				t.Fatalf("tcpdump did not see the %d tagged echo requests", want)
			}
			stopTcpdump()
			if code := r.stop(t, os.Interrupt); code != 0 {
				t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
			}
			got, wantFrames := pcapngtest.Read(t, path).Packets, pcapngtest.ReadPcap(t, ref)
			if len(got) != len(wantFrames) || len(got) != want {
				t.Fatalf("ringcap recorded %d frames, tcpdump %d, want %d", len(got), len(wantFrames), want)
			}
			for i := range got {
				if !bytes.Equal(got[i].Data, wantFrames[i].Data) {
					t.Errorf("frame %d differs from tcpdump's:\n ringcap %x\n tcpdump %x", i, got[i].Data[:min(32, len(got[i].Data))],
						wantFrames[i].Data[:min(32, len(wantFrames[i].Data))])
				}
			}
		})
	}
}
