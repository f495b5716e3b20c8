package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// globalExtcapDir is the folder where Wireshark looks for extcaps of all
// users, as tshark names it: Wireshark 4.0 says "Extcap path", 4.2 and
// later "Global Extcap path".
func globalExtcapDir(t *testing.T) string {
	t.Helper()
	bpftest.RequireTool(t, "tshark")
	out, err := exec.Command("tshark", "-G", "folders").Output()
	if err != nil {
		t.Fatalf("tshark -G folders: %v", err)
	}
	m := regexp.MustCompile(`(?m)^(?:Global )?Extcap path:\s*(\S+)$`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("tshark -G folders names no extcap folder:\n%s", out)
	}
	return string(m[1])
}

// installExtcap runs make install into a directory of the test's own,
// the extcap script into the personal extcap folder of Wireshark 4.0
// under it, and returns the directory to give Wireshark as
// XDG_CONFIG_HOME: it looks in XDG_CONFIG_HOME/wireshark/extcap besides
// its global folder. (WIRESHARK_EXTCAP_DIR, which would name the folder,
// is ignored for root.)
func installExtcap(t *testing.T) (config string) {
	t.Helper()
	bpftest.RequireTool(t, "make")
	bpftest.RequireTool(t, "tshark")
	root := t.TempDir()
	config = filepath.Join(root, "config")
	makeInstall(t, "PREFIX="+filepath.Join(root, "prefix"), "SYSCONFDIR="+filepath.Join(root, "etc"),
		"EXTCAPDIR="+filepath.Join(config, "wireshark/extcap"))
	return config
}

// tsharkProc is tshark running in the background.
type tsharkProc struct {
	stderr bytes.Buffer
	done   chan error
}

// startTshark runs tshark with args in namespace ns, with the extcap
// folder installExtcap made, or none (config: an empty directory).
func startTshark(t *testing.T, ns, config string, args ...string) *tsharkProc {
	t.Helper()
	bpftest.RequireTool(t, "tshark")
	cmd := exec.Command("ip", slices.Concat([]string{"netns", "exec", ns, "env", "XDG_CONFIG_HOME=" + config, "tshark"}, args)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	ts := &tsharkProc{done: make(chan error, 1)}
	cmd.Stderr = &ts.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { ts.done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	return ts
}

// wait returns how tshark ended; it fails t if it runs past timeout.
func (ts *tsharkProc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-ts.done:
		return err
	case <-time.After(timeout):
		t.Fatalf("tshark still runs after %v: %s", timeout, ts.stderr.String())
	}
	return nil
}

// waitAttached waits until n programs are at tcx ingress and egress each
// of the receiving end's first interface.
func (p *vethPair) waitAttached(t *testing.T, n int, ts *tsharkProc) {
	t.Helper()
	attached := func() bool {
		return p.tcxPrograms(t, ebpf.AttachTCXIngress) == n && p.tcxPrograms(t, ebpf.AttachTCXEgress) == n
	}
	if !waitFor(15*time.Second, attached) {
		t.Fatalf("%d programs were not attached within 15s: %s", n, ts.stderr.String())
	}
}

// pingAbove sends pings of each payload and returns the lengths of the
// frames above an MTU of mtu: each request received and reply sent.
func (p *vethPair) pingAbove(t *testing.T, mtu int, payloads ...int) []int {
	t.Helper()
	var want []int
	for _, payload := range payloads {
		p.ping(t, payload)
		if l3 := payload + 28; l3 > mtu {
			want = append(want, 14+l3, 14+l3)
		}
	}
	return want
}

// tshark -D, as Wireshark's interface list, names ringcap's interfaces
// through the installed extcap script.
func TestExtcapTsharkList(t *testing.T) {
	p := newVethPair(t)
	config := installExtcap(t)
	out, err := exec.Command("ip", "netns", "exec", p.Rx, "env", "XDG_CONFIG_HOME="+config, "tshark", "-D").Output()
	if err != nil {
		t.Fatalf("tshark -D: %v", err)
	}
	for _, ifc := range []string{"lo", rxIf, rxIf2} {
		if want := ". ringcap-" + ifc + " (ringcap on " + ifc + ")\n"; !strings.Contains(string(out), want) {
			t.Errorf("tshark -D does not list %q:\n%s", want, out)
		}
	}
	if !strings.Contains(string(out), ". ringcap-any (ringcap on every interface)\n") {
		t.Errorf("tshark -D does not list ringcap-any:\n%s", out)
	}
}

// tshark capturing on ringcap-IFACE, with an option of the dialog (-o)
// and a capture filter, until it stops itself (-a duration), writes the
// frames record writes of the same pings, captured beside it.
func TestExtcapTshark(t *testing.T) {
	p := newVethPair(t)
	config := installExtcap(t)
	dir := t.TempDir()
	recorded, captured := filepath.Join(dir, "record.pcapng"), filepath.Join(dir, "tshark.pcapng")
	r := p.start(t, "-w", recorded, "-Q", "inout", "--mtu", "1000", "icmp")
	ts := startTshark(t, p.Rx, config, "-i", extcapPrefix+rxIf, "-a", "duration:8", "-q", "-w", captured,
		"-o", "extcap.ringcap_"+strings.ReplaceAll(rxIf, "-", "_")+".mtu:1000", "-f", "icmp")
	p.waitAttached(t, 2, ts) // record's programs and the extcap's
	want := p.pingAbove(t, 1000, 500, 1100, 972, 973, 3000)
	if err := ts.wait(t, 30*time.Second); err != nil {
		t.Errorf("tshark: %v\n%s", err, ts.stderr.String())
	}
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap record exited with %d:\n%s", code, r.errors())
	}
	if strings.Contains(ts.stderr.String(), "Error by extcap pipe") {
		t.Errorf("tshark shows an error from ringcap: %s", ts.stderr.String())
	}
	got, fromRecord := pcapngtest.Read(t, captured).Packets, pcapngtest.Read(t, recorded).Packets
	if len(got) != len(want) || len(fromRecord) != len(want) {
		t.Fatalf("tshark wrote %d frames, record %d, want %d", len(got), len(fromRecord), len(want))
	}
	for i, pkt := range got {
		if pkt.Length != want[i] || pkt.Length != fromRecord[i].Length || !bytes.Equal(pkt.Data, fromRecord[i].Data) {
			t.Errorf("frame %d: tshark's is %d bytes (%d kept), record's %d (%d kept), want %d and the same bytes",
				i, pkt.Length, len(pkt.Data), fromRecord[i].Length, len(fromRecord[i].Data), want[i])
		}
	}
}

// A capture filter ringcap refuses ends tshark's capture at once, with
// ringcap's line as the extcap's error, rather than leaving it waiting.
func TestExtcapTsharkBadFilter(t *testing.T) {
	p := newVethPair(t)
	config := installExtcap(t)
	ts := startTshark(t, p.Rx, config, "-i", extcapPrefix+rxIf, "-a", "duration:30", "-q", "-w", filepath.Join(t.TempDir(), "x.pcapng"), "-f", "tcp port")
	err := ts.wait(t, 15*time.Second)
	want := `Error by extcap pipe: ringcap: extcap: filter expression "tcp port": can't parse filter expression: syntax error`
	if err == nil || !strings.Contains(ts.stderr.String(), want) {
		t.Errorf("tshark -f 'tcp port': %v, stderr\n%s\nwant a failure with %q", err, ts.stderr.String(), want)
	}
	p.noProgramsLeft(t)
}
