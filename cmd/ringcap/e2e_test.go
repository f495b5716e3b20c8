package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

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

// ringcapProc is ringcap running in the receiving namespace.
type ringcapProc struct {
	cmd      *exec.Cmd
	stdout   io.ReadCloser
	mu       sync.Mutex
	stderr   bytes.Buffer
	attached chan struct{}
	done     chan struct{}
}

// start runs ringcap record on the receiving end's first interface and
// returns once it says it is capturing.
func (p *vethPair) start(t *testing.T, args ...string) *ringcapProc {
	t.Helper()
	return p.startRecord(t, append([]string{"-i", rxIf}, args...)...)
}

// startRecord runs ringcap record with args. Unless args choose with -Q,
// it captures inbound frames only: most tests count what they send, not
// the replies.
func (p *vethPair) startRecord(t *testing.T, args ...string) *ringcapProc {
	t.Helper()
	if !slices.Contains(args, "-Q") {
		args = append([]string{"-Q", "in"}, args...)
	}
	return p.startWrapped(t, nil, append([]string{"record"}, args...)...)
}

// startWrapped runs wrapper (a command that runs the rest of its
// arguments), then ringcap with args, in the receiving namespace.
func (p *vethPair) startWrapped(t *testing.T, wrapper []string, args ...string) *ringcapProc {
	t.Helper()
	return startCommand(t, "ip", slices.Concat([]string{"netns", "exec", p.Rx}, wrapper, []string{binary}, args)...)
}

// startCommand runs name with args, a command that runs ringcap, and
// returns once ringcap says it is capturing.
func startCommand(t *testing.T, name string, args ...string) *ringcapProc {
	t.Helper()
	return startCmd(t, exec.Command(name, args...))
}

// startCmd starts cmd, a command that runs ringcap, as startCommand does.
func startCmd(t *testing.T, cmd *exec.Cmd) *ringcapProc {
	t.Helper()
	r := &ringcapProc{cmd: cmd, attached: make(chan struct{}), done: make(chan struct{})}
	// Should the test binary die (a timeout's panic), ringcap dies with
	// it instead of holding an interface.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := r.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if r.stdout, err = r.cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cmd.Process.Kill(); <-r.done })
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			r.mu.Lock()
			r.stderr.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
			if strings.Contains(sc.Text(), "capturing on") {
				once.Do(func() { close(r.attached) })
			}
		}
	}()
	select {
	case <-r.attached:
	case <-r.done:
		r.cmd.Wait()
		t.Fatalf("ringcap exited before capturing:\n%s", r.errors())
	case <-time.After(15 * time.Second):
		t.Fatalf("ringcap did not start capturing within 15s:\n%s", r.errors())
	}
	return r
}

func (r *ringcapProc) errors() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stderr.String()
}

// stop sends sig and returns ringcap's exit code once it has exited.
func (r *ringcapProc) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return r.wait(t)
}

func (r *ringcapProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("ringcap did not exit within 15s:\n%s", r.errors())
	}
	err := r.cmd.Wait()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return r.cmd.ProcessState.ExitCode()
}

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
			// t.TempDir's parent is closed to nobody.
			dir, err := os.MkdirTemp("", "ringcap-caps")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
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

// openPty returns a pseudo-terminal pair: what the program writes to slave
// is read from master.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}

// On a terminal, ringcap keeps a status line; with -q, or when stderr is
// not a terminal (every other test here), it does not.
func TestStatusLine(t *testing.T) {
	for _, quiet := range []bool{false, true} {
		t.Run(fmt.Sprintf("quiet=%v", quiet), func(t *testing.T) {
			p := newVethPair(t)
			master, slave := openPty(t)
			path := filepath.Join(t.TempDir(), "s.pcapng")
			args := []string{"netns", "exec", p.Rx, binary, "record", "-Q", "in", "-i", rxIf, "-w", path}
			if quiet {
				args = append(args, "-q")
			}
			cmd := exec.Command("ip", args...)
			cmd.Stderr = slave
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

			var mu sync.Mutex
			var out bytes.Buffer
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := master.Read(buf)
					mu.Lock()
					out.Write(buf[:n])
					mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
			seen := func(s string) func() bool {
				return func() bool {
					mu.Lock()
					defer mu.Unlock()
					return strings.Contains(out.String(), s)
				}
			}
			if !waitFor(15*time.Second, seen("capturing on")) {
				t.Fatal("ringcap did not start capturing")
			}
			p.ping(t, 2000)
			// The line is rewritten once a second. Quiet, it must not
			// show in the time it would have taken to show twice.
			status := "1 captured, 0 dropped, "
			if quiet {
				time.Sleep(2100 * time.Millisecond)
			} else if !waitFor(15*time.Second, seen(status)) {
				t.Errorf("no status line %q within 15s; stderr:\n%q", status, out.String())
			}
			cmd.Process.Signal(os.Interrupt)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("ringcap: %v", err)
			}
			if !waitFor(15*time.Second, seen("frames written")) {
				t.Fatal("no summary")
			}
			if quiet && seen(status)() {
				t.Errorf("status line %q shown with -q; stderr:\n%q", status, out.String())
			}
		})
	}
}

// While ringcap runs, the file already holds what arrived more than a
// second ago: tshark -r on it sees recent frames.
func TestFileReadableWhileCapturing(t *testing.T) {
	p := newVethPair(t)
	path := filepath.Join(t.TempDir(), "live.pcapng")
	r := p.start(t, "-w", path, "-q")
	for range 3 {
		p.ping(t, 2000)
	}
	// Frames reach the file within about a second (capture.Run flushes
	// that often); a loaded machine gets more time, but they must come.
	sent := time.Now()
	var n int
	// A read may meet a write half done: a block cut short is not yet
	// there, and counts as not.
	if !waitFor(10*time.Second, func() bool { n, _ = pcapngtest.Count(t, path, true); return n == 3 }) {
		t.Errorf("while capturing, the file holds %d frames 10s after the 3 were sent", n)
	}
	t.Logf("the frames were in the file %v after they were sent", time.Since(sent).Round(time.Millisecond))
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
}
