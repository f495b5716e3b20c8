package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/capture/cpustat"
	"github.com/ringcap/ringcap/cmd/internal/veth"
)

// The hook measurement: what a frame nobody selects costs the host at each
// hook ringcap can capture received frames at, on interfaces of three
// kinds: veth (native XDP, generic XDP, tcx ingress), a VXLAN overlay and
// loopback (no native XDP: generic XDP, tcx ingress). The frames are
// UDP datagrams from a socket, as a host's own traffic reaches these
// interfaces, small and large (XDP may copy a socket buffer to give it
// room), sent by one thread pinned to a CPU: the whole receive path, hook
// included, runs in that thread's softirq, and the kernel counts that
// time as the thread's, so its CPU time per datagram is what one frame
// costs, whatever else the machine runs.
//
//	go run ./cmd/ringbench --hooks

// hookSetup is one interface, one way to capture on it, and a datagram
// size.
type hookSetup struct {
	iface   string // "veth", "vxlan", "lo"
	hook    string // "none", "tcx ingress", "XDP native", "XDP generic"
	payload int
}

// hookArgs are ringcap's flags for each hook.
var hookArgs = map[string][]string{
	"tcx ingress": {"--hook", "tc"},
	"XDP native":  {"--hook", "xdp", "--mode", "native"},
	"XDP generic": {"--hook", "xdp", "--mode", "generic"},
}

// The overlay the VXLAN rows capture on, over the veth pair.
const (
	vxlanIf              = "rb-vx"
	vxlanTxAddr, vxAddr  = "198.19.0.1", "198.19.0.2"
	hookPort             = 9
	hookBatch            = 64
	hookRepeats          = 5
	hookFramesPerMeasure = 300_000
)

// The datagrams' payloads: 60-byte frames, and frames that fit the
// overlay's MTU of 1450.
var hookPayloads = []int{18, 1400}

// hookRow is the median run of a setup.
type hookRow struct {
	hookSetup
	perFrame time.Duration // the sending thread's CPU time per datagram
	machine  time.Duration // all CPUs' busy time per datagram
	received float64       // share of the datagrams the receiving socket got
}

func measureHooks(ringcap, dir string, smoke bool) error {
	n, repeats := hookFramesPerMeasure, hookRepeats
	if smoke {
		n, repeats = 20_000, 1
	}
	cpus, err := veth.AllowedCPUs()
	if err != nil {
		return err
	}
	if len(cpus) < 2 {
		return errors.New("the hook measurement needs two CPUs: a sender and a receiver")
	}
	p, err := veth.New(veth.Config{Name: fmt.Sprintf("ringbench-hooks-%d", os.Getpid()), Prefix: ifPrefix})
	if err != nil {
		return err
	}
	defer p.Close()
	if err := addVXLAN(p); err != nil {
		return err
	}
	var setups []hookSetup
	for _, payload := range hookPayloads {
		for _, s := range []hookSetup{
			{"veth", "none", 0}, {"veth", "tcx ingress", 0}, {"veth", "XDP native", 0}, {"veth", "XDP generic", 0},
			{"vxlan", "none", 0}, {"vxlan", "tcx ingress", 0}, {"vxlan", "XDP generic", 0},
			{"lo", "none", 0}, {"lo", "tcx ingress", 0}, {"lo", "XDP generic", 0},
		} {
			s.payload = payload
			setups = append(setups, s)
		}
	}
	runs := make([][]hookRow, len(setups))
	// In turn, so that the machine's drift spreads over every setup.
	for range repeats {
		for i, s := range setups {
			r, err := measureHook(p, ringcap, dir, s, n, cpus[0], cpus[1])
			if err != nil {
				return fmt.Errorf("%s, %s, %d-byte payload: %w", s.iface, s.hook, s.payload, err)
			}
			runs[i] = append(runs[i], r)
		}
	}
	var rows []hookRow
	for _, rs := range runs {
		slices.SortFunc(rs, func(a, b hookRow) int { return int(a.perFrame - b.perFrame) })
		rows = append(rows, rs[len(rs)/2])
	}
	printHooks(os.Stdout, rows)
	return nil
}

// addVXLAN joins the pair's namespaces by a VXLAN overlay over link 0.
func addVXLAN(p *veth.Network) error {
	l := p.Links[0]
	for _, end := range []struct{ ns, local, remote, addr string }{
		{p.Tx, l.TxAddr, l.RxAddr, vxlanTxAddr}, {p.Rx, l.RxAddr, l.TxAddr, vxAddr},
	} {
		dev := l.Tx
		if end.ns == p.Rx {
			dev = l.Rx
		}
		for _, args := range [][]string{
			{"-n", end.ns, "link", "add", vxlanIf, "type", "vxlan", "id", "42", "local", end.local, "remote", end.remote, "dstport", "4789", "dev", dev},
			{"netns", "exec", end.ns, "sysctl", "-qw", "net.ipv6.conf." + vxlanIf + ".disable_ipv6=1"},
			{"-n", end.ns, "addr", "add", end.addr + "/30", "dev", vxlanIf},
			{"-n", end.ns, "link", "set", vxlanIf, "up"},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
	}
	return nil
}

// measureHook runs ringcap at s's hook (none: no ringcap) and sends n
// datagrams through s's interface.
func measureHook(p *veth.Network, ringcap, dir string, s hookSetup, n, sendCPU, recvCPU int) (hookRow, error) {
	row := hookRow{hookSetup: s}
	captureOn, txNS, dst := p.Links[0].Rx, p.Tx, p.Links[0].RxAddr
	switch s.iface {
	case "vxlan":
		captureOn, dst = vxlanIf, vxAddr
	case "lo":
		captureOn, txNS, dst = "lo", p.Rx, "127.0.0.1"
	}
	if s.hook != "none" {
		t := tool{
			name: "ringcap-hooks",
			args: func(out string) []string {
				return append([]string{ringcap, "record", "-Q", "in", "-i", captureOn, "-w", out, "-q"}, hookArgs[s.hook]...)
			},
			ready: "capturing on",
		}
		proc, err := t.start(p, dir)
		if err != nil {
			return row, err
		}
		defer proc.stop()
	}
	var recv, send *net.UDPConn
	err := veth.Do(p.Rx, func() error {
		var err error
		recv, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(dst), Port: hookPort})
		if err == nil {
			err = recv.SetReadBuffer(32 << 20)
		}
		return err
	})
	if err != nil {
		return row, fmt.Errorf("receiving socket: %w", err)
	}
	defer recv.Close()
	err = veth.Do(txNS, func() error {
		var err error
		send, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(dst), Port: hookPort})
		return err
	})
	if err != nil {
		return row, fmt.Errorf("sending socket: %w", err)
	}
	defer send.Close()

	received := make(chan int, 1)
	go func() { received <- drainUDP(recv, recvCPU) }()
	busy0, err := cpustat.Machine()
	if err != nil {
		return row, err
	}
	took, err := sendUDP(send, n, s.payload, sendCPU)
	if err != nil {
		return row, err
	}
	busy1, err := cpustat.Machine()
	if err != nil {
		return row, err
	}
	// The receiver reads what is queued, then its deadline ends it.
	recv.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	row.perFrame = took / time.Duration(n)
	row.machine = (busy1 - busy0) / time.Duration(n)
	row.received = float64(<-received) / float64(n)
	return row, nil
}

// sendUDP sends n datagrams of payload bytes in batches (sendmmsg) from a
// thread pinned to cpu, and returns the CPU time the thread took.
func sendUDP(c *net.UDPConn, n, payload, cpu int) (time.Duration, error) {
	unpin, err := pin(cpu)
	if err != nil {
		return 0, err
	}
	defer unpin()
	pc := ipv4.NewPacketConn(c)
	msgs := make([]ipv4.Message, hookBatch)
	data := make([]byte, payload)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{data}
	}
	start, err := threadCPU()
	if err != nil {
		return 0, err
	}
	for sent := 0; sent < n; {
		k, err := pc.WriteBatch(msgs[:min(hookBatch, n-sent)], 0)
		if err != nil && !errors.Is(err, unix.ENOBUFS) {
			return 0, fmt.Errorf("sendmmsg: %w", err)
		}
		sent += k
	}
	end, err := threadCPU()
	return end - start, err
}

// threadCPU is the CPU time the calling thread has used, user and system.
func threadCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// drainUDP reads datagrams on a thread pinned to cpu until the
// connection's deadline, and returns how many it read.
func drainUDP(c *net.UDPConn, cpu int) int {
	if unpin, err := pin(cpu); err == nil {
		defer unpin()
	}
	pc := ipv4.NewPacketConn(c)
	msgs := make([]ipv4.Message, hookBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	total := 0
	for {
		k, err := pc.ReadBatch(msgs, 0)
		total += k
		if err != nil {
			return total
		}
	}
}

func printHooks(w io.Writer, rows []hookRow) {
	fmt.Fprintf(w, "\n### A frame nobody selects, by hook (%d UDP datagrams a run, median of %d runs)\n\n", hookFramesPerMeasure, hookRepeats)
	fmt.Fprintln(w, "| interface | payload | hook | CPU ns/frame | x-none | machine ns/frame | received |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
	var base time.Duration
	for _, r := range rows {
		if r.hook == "none" {
			base = r.perFrame
		}
		fmt.Fprintf(w, "| %s | %d B | %s | %d | %.2f | %d | %.0f%% |\n", r.iface, r.payload, r.hook, r.perFrame.Nanoseconds(),
			float64(r.perFrame)/float64(base), r.machine.Nanoseconds(), 100*r.received)
	}
}

// pin locks the calling goroutine to its thread and the thread to cpu;
// unpin undoes both.
func pin(cpu int) (unpin func(), err error) {
	runtime.LockOSThread()
	var set, orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	return func() {
		if unix.SchedSetaffinity(0, &orig) == nil {
			runtime.UnlockOSThread()
		}
	}, nil
}
