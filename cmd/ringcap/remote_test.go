package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// ringcap record -w - into a pipe whose reader goes away ends then, not
// at the next frame it selects: its programs come off at once.
func TestRecordStdoutReaderGone(t *testing.T) {
	p := newVethPair(t)
	r := p.start(t, "-w", "-", "--mtu", "8000")
	header := make([]byte, 32)
	if _, err := r.stdout.Read(header); err != nil {
		t.Fatal(err)
	}
	r.stdout.Close()
	select {
	case <-r.done:
		r.cmd.Wait()
	case <-time.After(5 * time.Second):
		t.Fatalf("ringcap still captures 5s after the reader of its standard output went away:\n%s", r.errors())
	}
	p.noProgramsLeft(t)
}

// sshServer runs sshd in namespace ns on addr, taking root with the key
// it returns, for the test alone: its own host key, no password, no PAM.
func sshServer(t *testing.T, ns, addr string) (clientKey string) {
	t.Helper()
	bpftest.RequireTool(t, "ssh-keygen")
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		sshd = "/usr/sbin/sshd"
	}
	if _, err := os.Stat(sshd); err != nil {
		bpftest.RequireTool(t, "sshd")
	}
	dir := t.TempDir()
	clientKey = filepath.Join(dir, "client_key")
	for _, key := range []string{filepath.Join(dir, "host_key"), clientKey} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	if err := os.Rename(clientKey+".pub", filepath.Join(dir, "authorized_keys")); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf("ListenAddress %s\nHostKey %s\nAuthorizedKeysFile %s\nPermitRootLogin prohibit-password\n"+
		"PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n",
		addr, filepath.Join(dir, "host_key"), filepath.Join(dir, "authorized_keys"))
	if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	// The privilege separation directory, which the package's service
	// makes at boot.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, sshd, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	var log bytes.Buffer
	cmd.Stderr = &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if !waitFor(10*time.Second, func() bool { return strings.Contains(log.String(), "Server listening") }) {
		t.Fatalf("sshd did not start: %s", log.String())
	}
	return clientKey
}

// Wireshark's sshdump with `ringcap record -w -` as its remote capture
// command, against an sshd in the receiving namespace on the second
// link: tshark on the sender gets the frames ringcap selects on the
// first, and the remote ringcap ends with the capture.
func TestExtcapSshdump(t *testing.T) {
	bpftest.RequireTool(t, "tshark")
	p := newVethPair(t)
	key := sshServer(t, p.Rx, rxAddr2)
	captured := filepath.Join(t.TempDir(), "sshdump.pcapng")
	remote := fmt.Sprintf("%s record -i %s -w - -q --mtu 1000 icmp", binary, rxIf)
	ts := startTshark(t, p.Tx, t.TempDir(), "-i", "sshdump", "-a", "duration:8", "-q", "-w", captured,
		"-o", "extcap.sshdump.remotehost:"+rxAddr2, "-o", "extcap.sshdump.remoteusername:root", "-o", "extcap.sshdump.sshkey:"+key,
		"-o", "extcap.sshdump.remotecapturecommandselect:other", "-o", "extcap.sshdump.remotecapturecommand:"+remote)
	p.waitAttached(t, 1, ts)
	want := p.pingAbove(t, 1000, 500, 1100, 1400)
	if err := ts.wait(t, 30*time.Second); err != nil {
		t.Errorf("tshark -i sshdump: %v\n%s", err, ts.stderr.String())
	}
	var got []int
	for _, pkt := range pcapngtest.Read(t, captured).Packets {
		got = append(got, pkt.Length)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sshdump brought frames of %v bytes, want %v", got, want)
	}
	if !waitFor(5*time.Second, func() bool { return p.tcxPrograms(t, ebpf.AttachTCXIngress) == 0 }) {
		t.Error("the remote ringcap still captures 5s after the capture ended")
	}
	p.noProgramsLeft(t)
}
