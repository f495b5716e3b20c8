package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// ringcap interfaces (and -D) lists each interface with where ringcap
// would capture on it: tcx ingress on veth, where it costs less than XDP,
// and on loopback, whose driver runs no XDP itself (never generic mode,
// which --hook auto does not choose), and tcx ingress behind another XDP
// program, which it names.
func TestInterfaces(t *testing.T) {
	p := newVethPair(t)
	list := func(args ...string) map[string]string {
		t.Helper()
		r := runCommand(t, "ip", append([]string{"netns", "exec", p.Rx, binary}, args...)...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("ringcap %v: exit %d\n%s", args, r.code, r.stderr)
		}
		lines := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			_, rest, _ := strings.Cut(line, ".")
			name, _, _ := strings.Cut(rest, " ")
			lines[name] = line
		}
		return lines
	}
	idx := ifindex(t, p.Rx, rxIf)
	want := map[string]string{
		"lo":  "1.lo [unknown, MTU 65536, driver loopback]: inbound at tcx ingress (its driver offers no native XDP here); outbound at tcx egress",
		rxIf:  fmt.Sprintf("%d.%s [up, MTU 9000, driver veth]: inbound at tcx ingress (%s); outbound at tcx egress", idx, rxIf, vethNote),
		rxIf2: fmt.Sprintf("%d.%s [up, MTU 9000, driver veth]: inbound at tcx ingress (%s); outbound at tcx egress", ifindex(t, p.Rx, rxIf2), rxIf2, vethNote),
	}
	for _, args := range [][]string{{"interfaces"}, {"-D"}} {
		// Only the test's interfaces: a host's tunnel modules may add
		// others (sit0, tunl0) to every namespace.
		got := list(args...)
		for name, line := range want {
			if got[name] != line {
				t.Errorf("ringcap %v: %q, want %q", args, got[name], line)
			}
		}
	}
	prog := p.holdXDP(t, link.XDPGenericMode)
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	want[rxIf] = fmt.Sprintf("%d.%s [up, MTU 9000, driver veth]: inbound at tcx ingress, behind XDP program other_pass (id %d); outbound at tcx egress", idx, rxIf, id)
	if got := list("interfaces"); got[rxIf] != want[rxIf] {
		t.Errorf("with another XDP program:\n%s\nwant\n%s", got[rxIf], want[rxIf])
	}
}

// --netns captures in another network namespace from ringcap's own, named
// as ip netns names it or by a path such as /proc/PID/ns/net, and says
// so in the first line and the file.
func TestNetns(t *testing.T) {
	p := newVethPair(t)
	// A process in the receiving namespace, for its /proc path.
	sleeper := exec.Command("ip", "netns", "exec", p.Rx, "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	procPath := fmt.Sprintf("/proc/%d/ns/net", sleeper.Process.Pid)
	own, _ := os.Readlink("/proc/self/ns/net")
	if !waitFor(5*time.Second, func() bool { ns, err := os.Readlink(procPath); return err == nil && ns != own }) {
		t.Fatal("the sleeper did not enter the namespace")
	}
	for _, ns := range []string{p.Rx, procPath} {
		t.Run(strings.ReplaceAll(ns, "/", "_"), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "netns.pcapng")
			r := startCommand(t, binary, "record", "--netns", ns, "-Q", "in", "-i", rxIf, "-w", path)
			if want := "capturing on " + rxIf + " in netns " + ns + " (inbound, " + vethHook + ")"; !strings.Contains(r.errors(), want) {
				t.Errorf("first line does not say %q:\n%s", want, r.errors())
			}
			p.ping(t, 2000)
			if code := r.stop(t, os.Interrupt); code != 0 {
				t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
			}
			rows := pcapngtest.Fields(t, path, "frame.len", "frame.interface_description")
			want := [][]string{{"2042", rxIf + " in netns " + ns + ": inbound, " + vethHook}}
			if fmt.Sprint(rows) != fmt.Sprint(want) {
				t.Errorf("frames (length, interface) = %q, want %q", rows, want)
			}
		})
	}
	// ringcap interfaces, there.
	r := runCommand(t, binary, "interfaces", "--netns", p.Rx)
	if r.code != 0 || !strings.Contains(r.stdout, "."+rxIf+" [up, MTU 9000, driver veth]") {
		t.Errorf("ringcap interfaces --netns %s: exit %d\n%s%s", p.Rx, r.code, r.stdout, r.stderr)
	}
}

// An interface that goes away is one line, and the capture goes on with
// the others; when the last one goes, ringcap ends as after Ctrl-C, with
// exit status 1, the file holds every frame captured before and the
// statistics of each interface, and -z sees the file.
func TestInterfaceGone(t *testing.T) {
	p := newVethPair(t)
	dir := t.TempDir()
	path, log := filepath.Join(dir, "gone.pcapng"), filepath.Join(dir, "post-rotate.log")
	r := p.startRecord(t, "-i", rxIf, "-i", rxIf2, "-w", path, "-z", "echo >>"+log)
	p.pingAddr(t, rxAddr, 2000)
	p.pingAddr(t, rxAddr2, 3000)
	runIP(t, "-n", p.Tx, "link", "del", txIf)
	if !waitFor(10*time.Second, func() bool { return strings.Contains(r.errors(), "interface "+rxIf+" went away") }) {
		t.Fatalf("ringcap does not say %s went away:\n%s", rxIf, r.errors())
	}
	p.pingAddr(t, rxAddr2, 4000) // the capture goes on
	runIP(t, "-n", p.Tx, "link", "del", txIf+"2")
	if code := r.wait(t); code != exitRuntime {
		t.Errorf("ringcap exited with %d once no interface was left, want %d:\n%s", code, exitRuntime, r.errors())
	}
	lines := strings.Split(strings.TrimSpace(r.errors()), "\n")
	if last := lines[len(lines)-1]; last != "ringcap: no interface left to capture on" {
		t.Errorf("last line %q, want the reason", last)
	}
	rows := pcapngtest.Fields(t, path, "frame.interface_name", "frame.len")
	want := [][]string{{rxIf, "2042"}, {rxIf2, "3042"}, {rxIf2, "4042"}}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Errorf("frames (interface, length) = %v, want %v", rows, want)
	}
	// The first interface went first: its statistics are what it
	// counted.
	seen := regexp.MustCompile(`ringcap: ` + rxIf + ` inbound: ([0-9]+) seen`).FindStringSubmatch(r.errors())
	if got := pcapngtest.Read(t, path).Stats.PacketsReceived; seen == nil || strconv.FormatUint(got, 10) != seen[1] || got == 0 {
		t.Errorf("%s's statistics say %d received, its summary line %q", rxIf, got, seen)
	}
	checkPostRotateLog(t, log, []string{path})
}

// A port leaving its bridge makes the kernel send a link deletion too
// (of the bridge family): the interface stays, and so does the capture.
func TestBridgePortLeaving(t *testing.T) {
	p := newVethPair(t)
	for _, args := range [][]string{
		{"link", "add", "rc-br", "type", "bridge"},
		{"link", "set", rxIf2, "master", "rc-br"},
	} {
		runIP(t, append([]string{"-n", p.Rx}, args...)...)
	}
	path := filepath.Join(t.TempDir(), "bridge.pcapng")
	r := p.startRecord(t, "-i", rxIf2, "-w", path)
	runIP(t, "-n", p.Rx, "link", "set", rxIf2, "nomaster")
	p.pingAddr(t, rxAddr2, 3000)
	if code := r.stop(t, os.Interrupt); code != 0 || strings.Contains(r.errors(), "went away") {
		t.Errorf("ringcap exited with %d:\n%s", code, r.errors())
	}
	if n, _ := pcapngtest.Count(t, path, false); n != 1 {
		t.Errorf("file holds %d frames, want the echo request sent after the port left the bridge", n)
	}
}

// -i any is every interface of the namespace, each with its file
// interfaces: loopback's frames once each, as received, as tcpdump shows
// them; an interface that cannot take the hook asked for is one line,
// and the capture goes on with the others.
func TestRecordAny(t *testing.T) {
	p := newVethPair(t)
	path := filepath.Join(t.TempDir(), "any.pcapng")
	r := p.startWrapped(t, nil, "record", "-i", "any", "-w", path, "icmp")
	p.pingAddr(t, rxAddr, 2000)
	p.pingAddr(t, rxAddr2, 3000)
	if out, err := exec.Command("ip", "netns", "exec", p.Rx, "ping", "-c", "1", "-W", "2", "-s", "1600", "127.0.0.1").CombinedOutput(); err != nil {
		t.Fatalf("ping lo: %v\n%s", err, out)
	}
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	for _, ifc := range []string{"lo (inbound, tcx ingress; its driver offers no native XDP here", rxIf + " (inbound, " + vethHook, rxIf2 + " (inbound, " + vethHook} {
		if !strings.Contains(r.errors(), "capturing on "+ifc) {
			t.Errorf("no first line for %s:\n%s", ifc, r.errors())
		}
	}
	rows := pcapngtest.Fields(t, path, "frame.interface_name", "frame.len", "icmp.type", "frame.packet_flags_direction")
	want := [][]string{
		{rxIf, "2042", "8", "0x00000001"}, {rxIf, "2042", "0", "0x00000002"},
		{rxIf2, "3042", "8", "0x00000001"}, {rxIf2, "3042", "0", "0x00000002"},
		{"lo", "1642", "8", "0x00000001"}, {"lo", "1642", "0", "0x00000001"},
	}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Errorf("frames (interface, length, icmp type, direction) =\n%v\nwant\n%v", rows, want)
	}

	// Native mode: loopback has none.
	r = p.startWrapped(t, nil, "record", "-Q", "in", "-i", "any", "--mode", "native", "-w", filepath.Join(t.TempDir(), "native.pcapng"))
	if want := "ringcap: attach lo in native mode: "; !strings.Contains(r.errors(), want) || !strings.Contains(r.errors(), ": left out, the capture goes on with the other interfaces\n") {
		t.Errorf("no line saying lo was left out:\n%s", r.errors())
	}
	if !strings.Contains(r.errors(), "capturing on "+rxIf+" (inbound, XDP native mode") {
		t.Errorf("the capture did not go on with %s:\n%s", rxIf, r.errors())
	}
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
}

// Under -i any, an interface that appears while ringcap runs is captured
// on too, with interfaces of its own in the open file, and one that goes
// away is one line; the capture of the others goes on.
func TestAnyInterfacesComeAndGo(t *testing.T) {
	p := newVethPair(t)
	path := filepath.Join(t.TempDir(), "come.pcapng")
	r := p.startWrapped(t, nil, "record", "-Q", "in", "-i", "any", "-w", path)
	p.pingAddr(t, rxAddr, 2000)
	// A third pair, made into both namespaces while ringcap runs.
	const newTx, newRx, newRxAddr = "rc-new-tx", "rc-new-rx", "198.18.0.10"
	p.addLinkWhile(t, r, newTx, newRx)
	p.pingAddr(t, newRxAddr, 2500)
	runIP(t, "-n", p.Tx, "link", "del", newTx)
	if !waitFor(10*time.Second, func() bool { return strings.Contains(r.errors(), "interface "+newRx+" went away") }) {
		t.Fatalf("ringcap does not say %s went away:\n%s", newRx, r.errors())
	}
	p.pingAddr(t, rxAddr2, 3000)
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	rows := pcapngtest.Fields(t, path, "frame.interface_name", "frame.len", "icmp.type")
	want := [][]string{{rxIf, "2042", "8"}, {newRx, "2542", "8"}, {rxIf2, "3042", "8"}}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Errorf("frames (interface, length, icmp type) = %v, want %v\n%s", rows, want, r.errors())
	}
	if !strings.Contains(r.errors(), "ringcap: "+newRx+" inbound: ") {
		t.Errorf("no summary line for %s:\n%s", newRx, r.errors())
	}
}

// addLinkWhile makes a veth pair tx-rx between the namespaces while r
// runs -i any, with 198.18.0.9 and 198.18.0.10, and waits until r
// captures on rx.
func (p *vethPair) addLinkWhile(t *testing.T, r *ringcapProc, tx, rx string) {
	t.Helper()
	for _, args := range [][]string{
		{"link", "add", tx, "netns", p.Tx, "mtu", "9000", "type", "veth", "peer", "name", rx, "netns", p.Rx, "mtu", "9000"},
		{"netns", "exec", p.Tx, "sysctl", "-qw", "net.ipv6.conf." + tx + ".disable_ipv6=1"},
		{"netns", "exec", p.Rx, "sysctl", "-qw", "net.ipv6.conf." + rx + ".disable_ipv6=1"},
		{"-n", p.Tx, "addr", "add", "198.18.0.9/30", "dev", tx},
		{"-n", p.Rx, "addr", "add", "198.18.0.10/30", "dev", rx},
		{"-n", p.Tx, "link", "set", tx, "up"},
		{"-n", p.Rx, "link", "set", rx, "up"},
	} {
		runIP(t, args...)
	}
	if !waitFor(10*time.Second, func() bool { return strings.Contains(r.errors(), "capturing on "+rx+" (inbound, ") }) {
		t.Fatalf("ringcap does not say it captures on %s:\n%s", rx, r.errors())
	}
}

// An interface that moves to another namespace takes ringcap's program
// off with it: there, the program shared by every interface would count
// its frames as those of whatever interface of the capture's namespace has
// its index. Here one does: rc-mv-a moves out, keeping its index, and a
// new rc-new-a takes the same index where ringcap captures. rc-new-a is
// down and sends nothing; rc-mv-a sends ARP requests in its new namespace.
func TestAnyInterfaceMovesAway(t *testing.T) {
	p := newVethPair(t)
	path := filepath.Join(t.TempDir(), "moved.pcapng")
	r := p.startWrapped(t, nil, "record", "-Q", "out", "-i", "any", "--all", "-w", path)
	const index = "2000"
	runIP(t, "-n", p.Rx, "link", "add", "name", "rc-mv-a", "index", index, "type", "veth", "peer", "name", "rc-mv-b", "index", "2001")
	if !waitFor(10*time.Second, func() bool { return strings.Contains(r.errors(), "capturing on rc-mv-a (outbound") }) {
		t.Fatalf("ringcap does not say it captures on rc-mv-a:\n%s", r.errors())
	}
	runIP(t, "-n", p.Rx, "link", "set", "rc-mv-a", "netns", p.Tx)
	if !waitFor(10*time.Second, func() bool { return strings.Contains(r.errors(), "interface rc-mv-a went away") }) {
		t.Fatalf("ringcap does not say rc-mv-a went away:\n%s", r.errors())
	}
	runIP(t, "-n", p.Rx, "link", "add", "name", "rc-new-a", "index", index, "type", "veth", "peer", "name", "rc-new-b", "index", "2002")
	if !waitFor(10*time.Second, func() bool { return strings.Contains(r.errors(), "capturing on rc-new-a (outbound") }) {
		t.Fatalf("ringcap does not say it captures on rc-new-a:\n%s", r.errors())
	}
	for _, args := range [][]string{
		{"-n", p.Tx, "link", "set", "rc-mv-a", "up"},
		{"-n", p.Tx, "addr", "add", "198.18.9.1/24", "dev", "rc-mv-a"},
	} {
		runIP(t, args...)
	}
	exec.Command("ip", "netns", "exec", p.Tx, "ping", "-c", "2", "-W", "1", "198.18.9.2").Run() // no answer: ARP only
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	for _, row := range pcapngtest.Fields(t, path, "frame.interface_name", "arp.src.proto_ipv4") {
		if row[0] == "rc-new-a" || row[0] == "rc-mv-a" {
			t.Errorf("a frame recorded as %s's (ARP from %s): another namespace's", row[0], row[1])
		}
	}
}

// Interfaces coming and going under -i any do not stall the capture of
// the others: while ten veth pairs are made beside the capture and
// deleted, twice under the same names (as a pod's veth comes back),
// pings on rc-rx keep arriving in the file, in both directions, with no
// gap over a second; and a real Prometheus server scraping all along
// gets every scrape, with one series per interface name and direction.
func TestAnyInterfacesChurn(t *testing.T) {
	bpftest.RequireTool(t, "curl")
	p := newVethPair(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "churn.pcapng")
	r := p.startWrapped(t, nil, "record", "-i", "any", "-q", "-w", path, "--metrics", "127.0.0.1:9464", "icmp")
	p.startPrometheus(t, dir, "127.0.0.1:9464")

	// 50 oversize echo requests a second, until the test ends.
	pinger := exec.Command("ip", "netns", "exec", p.Tx, "ping", "-q", "-i", "0.02", "-s", "2000", rxAddr)
	pinger.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := pinger.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pinger.Process.Kill(); pinger.Wait() })
	selected := `ringcap_frames_selected_total{interface="` + rxIf + `",direction="in"}`
	if !waitFor(30*time.Second, func() bool { v, ok := p.promQuery(t, selected); return ok && v > 0 }) {
		t.Fatalf("Prometheus has no %s above 0:\n%s", selected, r.errors())
	}

	const pairs, rounds = 10, 2
	churned := func(i int, end string) string { return fmt.Sprintf("rc-c%d-%s", i, end) }
	waitLines := func(what string, round int) {
		t.Helper()
		for i := range pairs {
			for _, end := range []string{"a", "b"} {
				line := fmt.Sprintf(what, churned(i, end))
				if !waitFor(30*time.Second, func() bool { return strings.Count(r.errors(), line) >= round }) {
					t.Fatalf("round %d: no %q:\n%s", round, line, r.errors())
				}
			}
		}
	}
	for round := 1; round <= rounds; round++ {
		for i := range pairs {
			runIP(t, "-n", p.Rx, "link", "add", churned(i, "a"), "up", "type", "veth", "peer", "name", churned(i, "b"))
			runIP(t, "-n", p.Rx, "link", "set", churned(i, "b"), "up")
		}
		waitLines("capturing on %s (", round)
		for i := range pairs {
			runIP(t, "-n", p.Rx, "link", "del", churned(i, "a"))
		}
		waitLines("interface %s went away", round)
	}

	// Every scrape since the churn ended found ringcap up, and one
	// series per interface name and direction.
	churnEnd := float64(time.Now().Unix())
	if !waitFor(30*time.Second, func() bool { v, ok := p.promQuery(t, `timestamp(up{job="ringcap"})`); return ok && v > churnEnd+1 }) {
		t.Fatal("Prometheus did not scrape ringcap after the churn")
	}
	if v, ok := p.promQuery(t, `min_over_time(up{job="ringcap"}[10m])`); !ok || v != 1 {
		t.Errorf("a scrape of ringcap failed (min of up = %v, %v)", v, ok)
	}
	if v, ok := p.promQuery(t, `count(ringcap_frames_seen_total{interface=~"rc-c.*"})`); !ok || v != 2*2*pairs {
		t.Errorf("%v series of ringcap_frames_seen_total for the churned interfaces, want %d (one per name and direction)", v, 2*2*pairs)
	}

	pinger.Process.Kill()
	pinger.Wait()
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	last := map[string]float64{}
	var frames int
	var longest float64
	for _, row := range pcapngtest.Fields(t, path, "frame.interface_name", "frame.time_epoch", "frame.packet_flags_direction") {
		if row[0] != rxIf {
			continue
		}
		at, err := strconv.ParseFloat(row[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		if prev, ok := last[row[2]]; ok {
			longest = max(longest, at-prev)
		}
		if prev, ok := last[row[2]]; ok && at-prev > 1 {
			t.Errorf("%s, direction %s: no frame for %.3fs, from %.3f", rxIf, row[2], at-prev, prev)
		}
		last[row[2]] = at
		frames++
	}
	if len(last) != 2 {
		t.Errorf("frames of %s in %d directions, want 2 (requests in, replies out)", rxIf, len(last))
	}
	t.Logf("%d frames of %s while %d veth pairs came and went %d times; the longest gap %.3fs", frames, rxIf, pairs, rounds, longest)
}
