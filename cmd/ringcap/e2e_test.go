package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/cmd/internal/veth"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// TestRecordOversize is the whole path: pings of known sizes below, at and
// above the threshold into the receiving namespace, ringcap recording
// there, and tshark reading the file.
func TestRecordOversize(t *testing.T) {
	for _, tt := range []struct {
		name       string
		mode       string
		vethMTU    int
		snaplen    int
		mtu        int // ringcap's --mtu
		payloads   []int
		attachment string
		program    string // the program's name, as `ip -d link` gives it
	}{
		// Native mode binds the program to the device, for the VLAN
		// tags the driver takes out; generic mode takes no bound
		// program.
		{"native", "native", 9000, 256, 1500, []int{1000, 1472, 1473, 1400, 4000, 8972}, "XDP native mode, multi-buffer)", "ringcap_xdp_tag"},
		{"generic", "generic", 9000, 4096, 1500, []int{1000, 1472, 1473, 1400, 4000, 8972},
			"XDP generic mode, multi-buffer; generic XDP costs as much per frame as tcx ingress or more, and some drivers make the kernel warn; " +
				"VLAN tags the driver takes out of frames may be missing (--hook tc keeps them))", "ringcap_xdp"},
		// At MTU 1500 veth takes the cheaper single-buffer program.
		{"native-linear", "native", 1500, 256, 1000, []int{900, 972, 973, 1472, 1000}, "XDP native mode)", "ringcap_lin_tag"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newVethPairMTU(t, tt.vethMTU)
			path := filepath.Join(t.TempDir(), "big.pcapng")
			r := p.start(t, "-w", path, "--mode", tt.mode, "-s", strconv.Itoa(tt.snaplen), "--mtu", strconv.Itoa(tt.mtu))
			if !strings.Contains(r.errors(), "(inbound, "+tt.attachment) {
				t.Errorf("ringcap does not say it attached in %s:\n%s", tt.attachment, r.errors())
			}
			if prog := p.xdpProgram(t); prog != tt.program {
				t.Errorf("program %q is attached, want %q", prog, tt.program)
			}

			type sent struct {
				frameLen int
				at       time.Time
			}
			var want []sent
			for _, payload := range tt.payloads {
				at := time.Now()
				p.ping(t, payload)
				if l3 := payload + 28; l3 > tt.mtu {
					want = append(want, sent{14 + l3, at})
				}
			}
			if code := r.stop(t, os.Interrupt); code != 0 {
				t.Fatalf("ringcap exited with %d after SIGINT:\n%s", code, r.errors())
			}
			p.noXDPLeft(t)
			if summary := fmt.Sprintf("ringcap: %d frames written to %s", len(want), path); !strings.Contains(r.errors(), summary) {
				t.Errorf("summary does not say %q:\n%s", summary, r.errors())
			}
			if strings.Contains(r.errors(), " captured, ") {
				t.Errorf("status line written to a stderr that is not a terminal:\n%s", r.errors())
			}

			checkHostDescribed(t, path)
			rows := pcapngtest.Fields(t, path, "frame.len", "frame.cap_len", "frame.interface_name", "frame.time_epoch", "icmp.type",
				"frame.interface_description")
			if len(rows) != len(want) {
				t.Fatalf("file holds %d frames, want the %d oversize echo requests: %q", len(rows), len(want), rows)
			}
			for i, w := range want {
				row := rows[i]
				wantRow := []string{strconv.Itoa(w.frameLen), strconv.Itoa(min(w.frameLen, tt.snaplen)), rxIf}
				if !slices.Equal(row[:3], wantRow) || row[4] != "8" {
					t.Errorf("frame %d: len, cap_len, interface, icmp type = %q, want %q and echo request (8)", i, row, wantRow)
				}
				// Wireshark names interfaces by their description.
				if desc := rxIf + ": inbound, " + strings.TrimSuffix(tt.attachment, ")"); row[5] != desc {
					t.Errorf("frame %d: interface description %q, want %q", i, row[5], desc)
				}
				ts, err := strconv.ParseFloat(row[3], 64)
				if err != nil {
					t.Fatal(err)
				}
				if d := time.Duration(ts*1e9 - float64(w.at.UnixNano())); d < -time.Second || d > time.Second {
					t.Errorf("frame %d: timestamp is %v from the time it was sent", i, d)
				}
			}
		})
	}
}

// Each frame's Enhanced Packet Block names the receive queue it came in
// on (epb_queue). veth hands a frame sent on transmit queue n to the
// peer's receive queue n, and XPS picks the transmit queue by the sending
// CPU: pings from two CPUs arrive on two queues.
func TestRecordQueues(t *testing.T) {
	bpftest.RequireTool(t, "taskset")
	allowed := allowedCPUs(t)
	if len(allowed) < 2 {
		t.Skipf("needs two CPUs to send from two queues; this process may use %v", allowed)
	}
	p := newNetwork(t, veth.Config{MTU: 1500, Queues: 2})
	for queue, cpu := range allowed {
		xps := fmt.Sprintf("echo %x > /sys/class/net/%s/queues/tx-%d/xps_cpus", 1<<cpu, txIf, queue)
		if out, err := exec.Command("ip", "netns", "exec", p.Tx, "sh", "-c", xps).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", xps, err, out)
		}
	}
	path := filepath.Join(t.TempDir(), "queues.pcapng")
	// Only XDP knows the receive queue.
	r := p.start(t, "-w", path, "--mtu", "1000", "--mode", "native")
	var want [][]string
	for _, queue := range []int{1, 0, 1} {
		out, err := exec.Command("ip", "netns", "exec", p.Tx, "taskset", "-c", strconv.Itoa(allowed[queue]),
			"ping", "-c", "1", "-W", "2", "-s", "1200", rxAddr).CombinedOutput()
		if err != nil {
			t.Fatalf("ping from CPU %d: %v\n%s", allowed[queue], err, out)
		}
		want = append(want, []string{strconv.Itoa(queue), "1242"})
	}
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	if got := pcapngtest.Fields(t, path, "frame.interface_queue", "frame.len"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("frames (queue, length) = %v, want %v", got, want)
	}
}

// allowedCPUs lists the CPUs the test may pin senders to.
func allowedCPUs(t *testing.T) []int {
	t.Helper()
	cpus, err := veth.AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	return cpus
}

// checkHostDescribed checks that the file describes the host as dumpcap
// does, as lscpu and uname describe it: the CPU model, the kernel, and
// ringcap's version; and the interface's operating system.
func checkHostDescribed(t *testing.T, path string) {
	t.Helper()
	bpftest.RequireTool(t, "lscpu")
	out, err := exec.Command("lscpu").Output()
	if err != nil {
		t.Fatal(err)
	}
	var model string
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "Model name" {
			model = strings.TrimSpace(v)
		}
	}
	kernel, err := exec.Command("uname", "-sr").Output()
	if err != nil {
		t.Fatal(err)
	}
	info := pcapngtest.Run(t, "capinfos", "-M", path)
	for _, want := range []string{
		"Capture hardware:    " + model + "\n",
		"Capture oper-sys:    " + strings.TrimSpace(string(kernel)) + "\n",
		"Capture application: ringcap " + testVersion + "\n",
		"Operating system = " + strings.TrimSpace(string(kernel)) + "\n",
	} {
		if !strings.Contains(info, want) {
			t.Errorf("capinfos does not say %q:\n%s", want, info)
		}
	}
}

// ringcap needs CAP_BPF and CAP_NET_ADMIN, as its error message says, and
// no more. Given CAP_PERFMON too, it can use the single-buffer build; and
// only then does the kernel load a program bound to the device, which gets
// the VLAN tags back.
func TestCapabilitiesSuffice(t *testing.T) {
	bpftest.RequireTool(t, "setpriv")
	for _, tt := range []struct {
		name    string
		caps    string
		vethMTU int
		program string
	}{
		{"bpf+net_admin", "+bpf,+net_admin", 1500, "ringcap_xdp"},
		{"bpf+net_admin, jumbo MTU", "+bpf,+net_admin", 9000, "ringcap_xdp"},
		{"bpf+net_admin+perfmon", "+bpf,+net_admin,+perfmon", 1500, "ringcap_lin_tag"},
		// The translated expression, with loads at X+k and protochain's
		// loop, needs no more.
		{"bpf+net_admin, expression", "+bpf,+net_admin", 1500, "ringcap_xdp"},
		{"bpf+net_admin+perfmon, expression", "+bpf,+net_admin,+perfmon", 1500, "ringcap_lin_tag"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newVethPairMTU(t, tt.vethMTU)
			dir := openDir(t, "ringcap-caps", 0o777)
			path := filepath.Join(dir, "caps.pcapng")
			nobody := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
				"--inh-caps=-all," + tt.caps, "--ambient-caps=-all," + tt.caps}
			args := []string{"record", "-Q", "in", "-i", rxIf, "-w", path, "--mode", "native", "--mtu", "1000"}
			if strings.HasSuffix(tt.name, "expression") {
				args = append(args, "icmp[icmptype] = icmp-echo or ip6 protochain 17 or udp port 53")
			}
			r := p.startWrapped(t, nobody, args...)
			if prog := p.xdpProgram(t); prog != tt.program {
				t.Errorf("program %q is attached, want %q", prog, tt.program)
			}
			p.ping(t, 1200) // L3 length 1228
			if code := r.stop(t, os.Interrupt); code != 0 {
				t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
			}
			if n, _ := pcapngtest.Count(t, path, false); n != 1 {
				t.Errorf("file holds %d frames, want the one echo request above --mtu", n)
			}
		})
	}
}

// The program is owned by ringcap's bpf_link: the kernel takes it off the
// interface when the process dies, even by SIGKILL.
func TestSIGKILLDetaches(t *testing.T) {
	p := newVethPair(t)
	r := p.start(t, "-w", filepath.Join(t.TempDir(), "k.pcapng"), "--mode", "native")
	if !p.xdpAttached(t) {
		t.Fatal("no XDP program on the interface while ringcap runs")
	}
	r.stop(t, syscall.SIGKILL)
	p.noXDPLeft(t)
}

// -w - writes a pcapng stream that a reader can follow while it is
// written; -c ends the capture by itself.
func TestStdoutAndCount(t *testing.T) {
	p := newVethPair(t)
	r := p.start(t, "-w", "-", "-c", "2", "-q")
	read := make(chan error, 1)
	var frames []int
	go func() {
		ng, err := pcapgo.NewNgReader(r.stdout, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			read <- err
			return
		}
		for {
			_, ci, err := ng.ReadPacketData()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				read <- err
				return
			}
			frames = append(frames, ci.Length)
		}
	}()
	for _, payload := range []int{2000, 100, 3000, 5000} {
		p.ping(t, payload)
	}
	// The stream ends when ringcap exits; read it all before Wait
	// closes the pipe.
	select {
	case err := <-read:
		if err != nil {
			t.Fatalf("read the pcapng stream: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("ringcap -c 2 did not end its stream within 15s")
	}
	if code := r.wait(t); code != 0 {
		t.Fatalf("ringcap -c 2 exited with %d:\n%s", code, r.errors())
	}
	if want := []int{2042, 3042}; fmt.Sprint(frames) != fmt.Sprint(want) {
		t.Errorf("stream holds frames of lengths %v, want %v", frames, want)
	}
	if first, _, _ := strings.Cut(r.errors(), "\n"); !strings.HasSuffix(first, "to standard output (buffered: standard output)") {
		t.Errorf("the first line does not say how the output is written: %s", first)
	}
	p.noXDPLeft(t)
}

func TestDuration(t *testing.T) {
	p := newVethPair(t)
	start := time.Now()
	r := p.start(t, "-w", filepath.Join(t.TempDir(), "d.pcapng"), "--duration", "1s")
	if code := r.wait(t); code != 0 {
		t.Fatalf("ringcap --duration 1s exited with %d:\n%s", code, r.errors())
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("ringcap --duration 1s stopped after %v", d)
	}
	if !strings.Contains(r.errors(), "ringcap: 0 frames written") {
		t.Errorf("no summary:\n%s", r.errors())
	}
}

// One file holds both interfaces, each frame tagged with its own.
func TestTwoInterfaces(t *testing.T) {
	p := newVethPair(t)
	path := filepath.Join(t.TempDir(), "two.pcapng")
	r := p.startRecord(t, "-i", rxIf, "-i", rxIf2, "-w", path)
	p.pingAddr(t, rxAddr, 2000)
	p.pingAddr(t, rxAddr2, 3000)
	p.pingAddr(t, rxAddr2, 100)
	p.pingAddr(t, rxAddr, 4000)
	if code := r.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("ringcap exited with %d after SIGTERM:\n%s", code, r.errors())
	}
	rows := pcapngtest.Fields(t, path, "frame.interface_name", "frame.len")
	want := [][]string{{rxIf, "2042"}, {rxIf2, "3042"}, {rxIf, "4042"}}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Errorf("frames (interface, length) = %v, want %v", rows, want)
	}
	for _, ifc := range []string{rxIf, rxIf2} {
		if !strings.Contains(r.errors(), "ringcap: "+ifc+" inbound: ") {
			t.Errorf("no summary line for %s:\n%s", ifc, r.errors())
		}
	}
}
