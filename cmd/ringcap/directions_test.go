package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netns"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// inNetns runs f on a thread in the named network namespace: sockets,
// programs attached and links made there stay there after f returns.
func inNetns(t *testing.T, name string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	// Back before the thread is unlocked, also when f fails the test.
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err)
		}
	}()
	f()
}

// ifindex is the index of interface name in namespace ns.
func ifindex(t *testing.T, ns, name string) int {
	t.Helper()
	var idx int
	inNetns(t, ns, func() {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			t.Fatal(err)
		}
		idx = ifc.Index
	})
	return idx
}

// pattern is n bytes that tell their offsets apart, different for each
// seed.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i/251) ^ seed
	}
	return b
}

// exchange runs a TCP exchange on port 5001: the sender's client sends
// up bytes and half-closes, the receiver's server answers with down
// bytes.
func (p *vethPair) exchange(t *testing.T, up, down []byte) {
	t.Helper()
	p.exchangeWith(t, rxAddr, up, down)
}

// exchangeWith is exchange with the receiver's address addr.
func (p *vethPair) exchangeWith(t *testing.T, addr string, up, down []byte) {
	t.Helper()
	var ln net.Listener
	inNetns(t, p.Rx, func() {
		var err error
		if ln, err = net.Listen("tcp4", addr+":5001"); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		got, err := io.ReadAll(c)
		if err == nil && !bytes.Equal(got, up) {
			err = fmt.Errorf("server read %d bytes, not the %d sent", len(got), len(up))
		}
		if err == nil {
			_, err = c.Write(down)
		}
		served <- err
	}()
	var conn net.Conn
	inNetns(t, p.Tx, func() {
		var err error
		if conn, err = net.DialTimeout("tcp4", addr+":5001", 5*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write(up); err != nil {
		t.Fatal(err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, down) {
		t.Fatalf("client read %d bytes, not the %d sent", len(got), len(down))
	}
}

// followTCP reassembles the first TCP stream of the file with tshark, as
// Wireshark's Follow TCP Stream does: the bytes the client sent, and the
// bytes the server sent.
func followTCP(t *testing.T, path string) (client, server []byte) {
	t.Helper()
	out := pcapngtest.Run(t, "tshark", "-r", path, "-q", "-z", "follow,tcp,raw,0")
	// Between the "=====" lines: node 0's data unindented, node 1's
	// indented by a tab, hex. Node 0 sent the first frame in the file:
	// the server, where the file holds only what it sent.
	inside, serverFirst := false, false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "====="):
			inside = !inside
			continue
		case strings.HasPrefix(line, "Node 0: "):
			serverFirst = strings.HasPrefix(line, "Node 0: "+rxAddr+":5001")
			continue
		case !inside, strings.HasPrefix(line, "Follow:"), strings.HasPrefix(line, "Filter:"),
			strings.HasPrefix(line, "Node 1:"), line == "":
			continue
		}
		to := &client
		if strings.HasPrefix(line, "\t") != serverFirst {
			to = &server
		}
		b, err := hex.DecodeString(strings.TrimSpace(line))
		if err != nil {
			t.Fatalf("tshark's follow output: %q: %v", line, err)
		}
		*to = append(*to, b...)
	}
	return client, server
}

// Both directions of a TCP exchange, and each alone: the file holds
// every byte each way, as tshark's Follow TCP Stream reassembles it, or
// none of the direction left out.
func TestRecordDirections(t *testing.T) {
	bpftest.RequireTool(t, "tshark")
	up, down := pattern(3<<20, 0x5a), pattern(1<<20, 0xa5)
	for _, tt := range []struct {
		direction      string
		upSeen, downOK bool
	}{
		{"", true, true}, // the default, inout
		{"in", true, false},
		{"out", false, true},
	} {
		name := tt.direction
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			p := newVethPair(t)
			path := filepath.Join(t.TempDir(), "tcp.pcapng")
			args := []string{"-i", rxIf, "-w", path, "--all", "-s", "0", "--ring-size", "64MiB"}
			wantLine := "(inbound, " + vethHook + "; outbound, tcx egress)"
			switch tt.direction {
			case "in":
				wantLine = "(inbound, " + vethHook + ")"
			case "out":
				wantLine = "(outbound, tcx egress)"
			}
			if tt.direction != "" {
				args = append(args, "-Q", tt.direction)
			}
			// Not startRecord, which would say -Q in for the default.
			r := p.startWrapped(t, nil, slices.Concat([]string{"record"}, args, []string{"tcp port 5001"})...)
			if !strings.Contains(r.errors(), "capturing on "+rxIf+" "+wantLine) {
				t.Errorf("first line does not name the hooks %s:\n%s", wantLine, r.errors())
			}
			p.exchange(t, up, down)
			if code := r.stop(t, os.Interrupt); code != 0 {
				t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
			}
			// The last line sums the hooks.
			lines := strings.Split(strings.TrimSpace(r.errors()), "\n")
			if !strings.HasSuffix(lines[len(lines)-1], " 0 dropped because the ring was full, 0 reserve failures") {
				t.Fatalf("frames were lost:\n%s", r.errors())
			}
			client, server := followTCP(t, path)
			if tt.upSeen != bytes.Equal(client, up) || (!tt.upSeen && len(client) > 0) {
				t.Errorf("the file holds %d bytes from the client, want %v of the %d sent", len(client), tt.upSeen, len(up))
			}
			if tt.downOK != bytes.Equal(server, down) || (!tt.downOK && len(server) > 0) {
				t.Errorf("the file holds %d bytes from the server, want %v of the %d sent", len(server), tt.downOK, len(down))
			}
			checkDirections(t, path, tt.direction)
			if tt.direction == "" {
				checkReplayKeepsDirections(t, path)
			}
		})
	}
}

// checkDirections checks that every frame's epb_flags gives the direction
// of its interface's description, and only the directions asked for.
func checkDirections(t *testing.T, path, direction string) {
	t.Helper()
	seen := map[string]int{}
	for _, row := range pcapngtest.Fields(t, path, "frame.packet_flags_direction", "frame.interface_description") {
		dir := map[string]string{"0x00000001": "inbound", "0x00000002": "outbound"}[row[0]]
		if !strings.HasPrefix(row[1], rxIf+": "+dir+", ") {
			t.Fatalf("a frame with epb_flags %s on interface %q", row[0], row[1])
		}
		seen[dir]++
	}
	want := map[string]bool{"inbound": direction != "out", "outbound": direction != "in"}
	for dir, ok := range want {
		if ok != (seen[dir] > 0) {
			t.Errorf("%d %s frames in the file with -Q %q", seen[dir], dir, direction)
		}
	}
}

// checkReplayKeepsDirections replays a two-direction capture with each
// build at ingress: every frame comes out with its direction, through
// the program of its direction.
func checkReplayKeepsDirections(t *testing.T, path string) {
	t.Helper()
	want := pcapngtest.Fields(t, path, "frame.packet_flags_direction", "frame.len", "frame.cap_len")
	for _, hook := range []string{"auto", "tc"} {
		out := filepath.Join(t.TempDir(), "replay-"+hook+".pcapng")
		r := runRingcap(t, nil, "replay", path, "-w", out, "--all", "-s", "0", "--hook", hook)
		if r.code != 0 {
			t.Fatalf("replay --hook %s: exit %d\n%s", hook, r.code, r.stderr)
		}
		got := pcapngtest.Fields(t, out, "frame.packet_flags_direction", "frame.len", "frame.cap_len")
		if !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("replay --hook %s: %d frames differ in direction or length from the %d recorded", hook, len(got), len(want))
		}
	}
}

// attachIn attaches a program to interface ifname of namespace ns with
// attach, given its index there, until t ends.
func attachIn(t *testing.T, ns, ifname string, attach func(index int) (link.Link, error)) {
	t.Helper()
	idx := ifindex(t, ns, ifname)
	inNetns(t, ns, func() {
		l, err := attach(idx)
		if err != nil {
			t.Fatalf("attach to %s: %v", ifname, err)
		}
		t.Cleanup(func() { l.Close() })
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

// pushTags attaches vlanPusher to the sending end's tcx egress.
func (p *vethPair) pushTags(t *testing.T) {
	t.Helper()
	prog := vlanPusher(t)
	attachIn(t, p.Tx, txIf, func(idx int) (link.Link, error) {
		return link.AttachTCX(link.TCXOptions{Program: prog, Interface: idx, Attach: ebpf.AttachTCXEgress})
	})
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
	inNetns(t, p.Rx, func() {
		res, err := link.QueryPrograms(link.QueryOptions{Target: idx, Attach: attach})
		if err != nil {
			t.Fatal(err)
		}
		n = len(res.Programs)
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

// tcpdumpRecord runs tcpdump on the receiving end, writing what expr
// selects to a pcap file, until the returned function is called.
func (p *vethPair) tcpdumpRecord(t *testing.T, path, expr string) (stop func()) {
	t.Helper()
	return p.tcpdumpAt(t, p.Rx, rxIf, "in", path, expr)
}

// tcpdumpAt runs tcpdump in namespace ns on interface ifc, for the
// direction dir (as -Q takes it), as tcpdumpRecord does.
func (p *vethPair) tcpdumpAt(t *testing.T, ns, ifc, dir, path, expr string) (stop func()) {
	t.Helper()
	bpftest.RequireTool(t, "tcpdump")
	// A buffer of 64 MiB: the tests compare with what tcpdump saw, and
	// it must not drop what it could not read in time.
	cmd := exec.Command("ip", "netns", "exec", ns, "tcpdump", "--immediate-mode", "-B", "65536", "-Q", dir, "-i", ifc, "-w", path, "-U", expr)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			// What tcpdump has not read yet is lost at SIGINT: wait
			// until its file (-U: written a packet at a time) stops
			// growing.
			size, still := int64(-1), 0
			waitFor(5*time.Second, func() bool {
				st, err := os.Stat(path)
				if err == nil && st.Size() == size {
					still++
				} else if err == nil {
					size, still = st.Size(), 0
				}
				return still >= 3
			})
			cmd.Process.Signal(os.Interrupt)
			cmd.Wait()
			if !strings.Contains(stderr.String(), "\n0 packets dropped by kernel") {
				t.Errorf("tcpdump lost packets, and is no reference:\n%s", stderr.String())
			}
		})
	}
	t.Cleanup(stop)
	if !waitFor(10*time.Second, func() bool { return strings.Contains(stderr.String(), "listening on") }) {
		t.Fatalf("tcpdump did not start: %s", stderr.String())
	}
	return stop
}

// syncBuffer is a bytes.Buffer that a command writes while the test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
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
			if !waitFor(10*time.Second, func() bool { n, _ := countPcap(ref); return n >= want }) {
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

// countPcap counts the frames of a pcap file that is still being written.
func countPcap(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 24 {
		return 0, err
	}
	n := 0
	for off := 24; off+16 <= len(b); n++ {
		capLen := int(uint32(b[off+8]) | uint32(b[off+9])<<8 | uint32(b[off+10])<<16 | uint32(b[off+11])<<24)
		off += 16 + capLen
		if off > len(b) {
			break
		}
	}
	return n, nil
}

// At MTU 1500 a TSO bulk send is not oversize, however long its
// super-packets; --all -s 0 records them whole, as tcpdump does. At MTU
// 9000, 3000-byte pings are oversize both ways.
func TestGSOAndJumboBothWays(t *testing.T) {
	t.Run("gso", func(t *testing.T) {
		p := newVethPairMTU(t, 1500)
		dir := t.TempDir()
		def, all := filepath.Join(dir, "default.pcapng"), filepath.Join(dir, "all.pcapng")
		rd := p.startRecord(t, "-Q", "out", "-i", rxIf, "-w", def, "tcp port 5001")
		ra := p.startRecord(t, "-Q", "out", "-i", rxIf, "-w", all, "--all", "-s", "0", "--ring-size", "64MiB", "tcp port 5001")
		p.exchange(t, pattern(1000, 1), pattern(4<<20, 2))
		for _, r := range []*ringcapProc{rd, ra} {
			if code := r.stop(t, os.Interrupt); code != 0 {
				t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
			}
		}
		if n, _ := pcapngtest.Count(t, def, false); n != 0 {
			t.Errorf("the default selection recorded %d frames of a bulk send at MTU 1500, want none", n)
		}
		longest := 0
		for _, row := range pcapngtest.Fields(t, all, "frame.len") {
			n, _ := strconv.Atoi(row[0])
			longest = max(longest, n)
		}
		if longest <= 1514 {
			t.Errorf("--all -s 0 recorded no super-packet (longest frame %d): the test sent no GSO packets", longest)
		}
		if _, server := followTCP(t, all); !bytes.Equal(server, pattern(4<<20, 2)) {
			t.Errorf("--all -s 0 holds %d bytes of the bulk send, want all %d", len(server), 4<<20)
		}
	})
	t.Run("jumbo pings", func(t *testing.T) {
		p := newVethPair(t)
		path := filepath.Join(t.TempDir(), "jumbo.pcapng")
		r := p.startRecord(t, "-Q", "inout", "-i", rxIf, "-w", path)
		p.ping(t, 3000)
		p.ping(t, 1000)
		if code := r.stop(t, os.Interrupt); code != 0 {
			t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
		}
		rows := pcapngtest.Fields(t, path, "frame.len", "icmp.type", "frame.packet_flags_direction")
		want := [][]string{{"3042", "8", "0x00000001"}, {"3042", "0", "0x00000002"}}
		if fmt.Sprint(rows) != fmt.Sprint(want) {
			t.Errorf("frames (length, icmp type, direction) = %v, want %v", rows, want)
		}
	})
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
	if !waitFor(10*time.Second, func() bool { n, _ := countPcap(ref); return n >= 2 }) {
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
