package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// extcapProc is ringcap extcap --capture running in the receiving
// namespace, as Wireshark runs it, writing into a named pipe the test
// reads.
type extcapProc struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	pipe   *os.File // the test's end, open for reading
	done   chan struct{}

	// What readAll read so far, and closed once it read the end.
	mu     sync.Mutex
	read   bytes.Buffer
	readTo chan struct{}
}

// startExtcap runs ringcap extcap --capture on the receiving end's first
// interface with args, and returns once ringcap opened the named pipe:
// it does so once the programs are attached.
func (p *vethPair) startExtcap(t *testing.T, args ...string) *extcapProc {
	t.Helper()
	return p.startExtcapAs(t, nil, binary, rxIf, args...)
}

// startExtcapAs is startExtcap on iface running bin, through asUser (a
// command that runs the rest of its arguments as user nobody) unless it
// is nil. The pipe is then nobody's, as Wireshark run by a user makes it.
func (p *vethPair) startExtcapAs(t *testing.T, asUser []string, bin, iface string, args ...string) *extcapProc {
	t.Helper()
	fifo := filepath.Join(openDir(t, "ringcap-extcap", 0o755), "wireshark_extcap_fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if asUser != nil {
		if err := os.Chown(fifo, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	e := &extcapProc{done: make(chan struct{})}
	e.cmd = exec.Command("ip", slices.Concat([]string{"netns", "exec", p.Rx}, asUser, []string{bin, "extcap", "--capture",
		"--extcap-interface", extcapPrefix + iface, "--fifo", fifo}, args)...)
	e.cmd.Stderr = &e.stderr
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { e.cmd.Wait(); close(e.done) }()
	t.Cleanup(func() { e.cmd.Process.Kill(); <-e.done })
	opened := make(chan *os.File, 1)
	go func() {
		// Returns once ringcap opens the other end; fails if it
		// exits instead, when the cleanup removes the pipe.
		f, err := os.Open(fifo)
		if err == nil {
			opened <- f
		}
	}()
	select {
	case e.pipe = <-opened:
		t.Cleanup(func() { e.pipe.Close() })
	case <-e.done:
		t.Fatalf("ringcap extcap exited before opening the pipe: %s", e.stderr.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("ringcap extcap did not open the pipe within 15s: %s", e.stderr.String())
	}
	return e
}

// readAll reads the pipe, from now to its end, for file.
func (e *extcapProc) readAll() {
	e.readTo = make(chan struct{})
	go func() {
		defer close(e.readTo)
		chunk := make([]byte, 64<<10)
		for {
			n, err := e.pipe.Read(chunk)
			e.mu.Lock()
			e.read.Write(chunk[:n])
			e.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
}

// bytesRead is how much readAll has read so far.
func (e *extcapProc) bytesRead() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.read.Len()
}

// headerRead waits until readAll has read the header blocks, which
// ringcap writes at once, and returns their size.
func (e *extcapProc) headerRead(t *testing.T) int {
	t.Helper()
	if !waitFor(10*time.Second, func() bool { return e.bytesRead() > 0 }) {
		t.Fatal("ringcap wrote no header into the pipe")
	}
	return e.bytesRead()
}

// waitMore waits until readAll has read more than n bytes. A frame that
// came through says ringcap captures, and takes SIGTERM as the end of
// it; a moment before, SIGTERM ends it as it ends any program (the
// kernel takes the programs off).
func (e *extcapProc) waitMore(t *testing.T, n int) {
	t.Helper()
	if !waitFor(10*time.Second, func() bool { return e.bytesRead() > n }) {
		t.Fatal("no frame came through the pipe")
	}
}

// file is what readAll read, once ringcap has closed the pipe; a file
// Wireshark's reader would not read whole fails t.
func (e *extcapProc) file(t *testing.T) pcapngtest.File {
	t.Helper()
	<-e.readTo
	path := filepath.Join(t.TempDir(), "read.pcapng")
	if err := os.WriteFile(path, e.read.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	pcapngtest.Count(t, path, false)
	return pcapngtest.Read(t, path)
}

// lengths are the packets' lengths on the wire.
func lengths(packets []pcapngtest.Packet) []int {
	var n []int
	for _, p := range packets {
		n = append(n, p.Length)
	}
	return n
}

// stop sends SIGTERM, as Wireshark does to stop a capture, and returns
// ringcap's exit code.
func (e *extcapProc) stop(t *testing.T) int {
	t.Helper()
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	return e.wait(t, 15*time.Second)
}

func (e *extcapProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-e.done:
	case <-time.After(timeout):
		t.Fatalf("ringcap extcap did not exit within %v: %s", timeout, e.stderr.String())
	}
	return e.cmd.ProcessState.ExitCode()
}

// noProgramsLeft fails t if any tcx program is left on the receiving end.
func (p *vethPair) noProgramsLeft(t *testing.T) {
	t.Helper()
	for _, attach := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		if n := p.tcxPrograms(t, attach); n != 0 {
			t.Errorf("%d %v programs left on %s", n, attach, rxIf)
		}
	}
	p.noXDPLeft(t)
}

// The capture Wireshark starts, on an interface and on any: the frames
// selected with the dialog's options into the pipe, until SIGTERM; then
// the statistics blocks, the programs detached, exit status 0 and nothing
// on stderr, which Wireshark would show as an error.
func TestExtcapCapture(t *testing.T) {
	for _, iface := range []string{rxIf, "any"} {
		t.Run(iface, func(t *testing.T) {
			p := newVethPair(t)
			e := p.startExtcapAs(t, nil, binary, iface, "--mtu", "1000", "--extcap-capture-filter", "icmp")
			e.readAll()
			header := e.headerRead(t)
			want := p.pingAbove(t, 1000, 500, 1100, 1400, 972, 973)
			e.waitMore(t, header)
			if code := e.stop(t); code != 0 || e.stderr.Len() != 0 {
				t.Errorf("after SIGTERM: exit %d, stderr %q; want 0 and nothing", code, e.stderr.String())
			}
			p.noProgramsLeft(t)
			file := e.file(t)
			if got := lengths(file.Packets); !slices.Equal(got, want) {
				t.Errorf("the pipe carried frames of %v bytes, want %v", got, want)
			}
			// Five echo requests and whatever ARP the pings needed (with
			// any, the first interface is another).
			if iface == rxIf && (file.Stats.PacketsReceived < 5 || file.Stats.PacketsDropped != 0) {
				t.Errorf("statistics block of %s inbound: %d seen, %d dropped; want 5 or more and none", rxIf, file.Stats.PacketsReceived, file.Stats.PacketsDropped)
			}
		})
	}
}

// Once the dialog's options are saved, Wireshark passes every one, the
// defaults too: each combination of them is taken.
func TestExtcapSavedOptions(t *testing.T) {
	for _, direction := range []string{"in", "out", "inout"} {
		t.Run(direction, func(t *testing.T) {
			p := newVethPair(t)
			e := p.startExtcap(t, "--mtu", "1500", "--all", "--snaplen", "256", "--direction", direction, "--hook", "auto")
			e.readAll()
			header := e.headerRead(t)
			for end := time.Now().Add(10 * time.Second); e.bytesRead() == header && time.Now().Before(end); {
				p.ping(t, 100)
			}
			e.waitMore(t, header)
			if code := e.stop(t); code != 0 || e.stderr.Len() != 0 {
				t.Errorf("after SIGTERM: exit %d, stderr %q; want 0 and nothing", code, e.stderr.String())
			}
		})
	}
}

// Wireshark runs extcaps as its user: with the capabilities the README
// gives the binary (file capabilities), ringcap captures as nobody into
// nobody's pipe.
func TestExtcapAsUser(t *testing.T) {
	bpftest.RequireTool(t, "setcap")
	bpftest.RequireTool(t, "setpriv")
	p := newVethPair(t)
	bin := filepath.Join(openDir(t, "ringcap-bin", 0o755), "ringcap")
	exe, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("setcap", "cap_bpf,cap_net_admin,cap_perfmon+ep", bin).CombinedOutput(); err != nil {
		t.Fatalf("setcap: %v\n%s", err, out)
	}
	nobody := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"}
	e := p.startExtcapAs(t, nobody, bin, rxIf, "--mtu", "1000")
	e.readAll()
	header := e.headerRead(t)
	want := p.pingAbove(t, 1000, 500, 1100)
	e.waitMore(t, header)
	if code := e.stop(t); code != 0 || e.stderr.Len() != 0 {
		t.Errorf("after SIGTERM: exit %d, stderr %q; want 0 and nothing", code, e.stderr.String())
	}
	p.noProgramsLeft(t)
	if got := lengths(e.file(t).Packets); !slices.Equal(got, want) {
		t.Errorf("the pipe carried frames of %v bytes, want %v", got, want)
	}
}

// Wireshark closing the pipe (its capture stopped, or dumpcap gone) ends
// the capture as SIGTERM does: exit status 0, nothing on stderr, the
// programs detached, once a frame finds the pipe closed.
func TestExtcapReaderGone(t *testing.T) {
	p := newVethPair(t)
	e := p.startExtcap(t, "--all")
	header := make([]byte, 64)
	if _, err := io.ReadFull(e.pipe, header); err != nil {
		t.Fatal(err)
	}
	e.pipe.Close()
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); {
		p.ping(t, 100)
		select {
		case <-e.done:
			end = time.Now()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if code := e.wait(t, time.Second); code != 0 || e.stderr.Len() != 0 {
		t.Errorf("after the reader closed the pipe: exit %d, stderr %q; want 0 and nothing", code, e.stderr.String())
	}
	p.noProgramsLeft(t)
}

// A capture that cannot start says why on stderr, in one line, and lets
// the reader waiting on the pipe go (it reads the end of the pipe) rather
// than leaving it waiting: Wireshark's dumpcap would wait for ever.
func TestExtcapCaptureRefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		args  []string
		root  bool // the refusal comes after the privileges are checked
		code  int
		error string
	}{
		{"bad filter", []string{"--extcap-interface", "ringcap-lo", "--extcap-capture-filter", "tcp port"}, false, exitUsage,
			`ringcap: extcap: filter expression "tcp port": can't parse filter expression: syntax error`},
		{"no interface", []string{"--extcap-interface", "ringcap-rc-none0"}, true, exitRuntime, "rc-none0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root {
				bpftest.RequirePrivileges(t)
			}
			readerDone := make(chan error, 1)
			go func() {
				f, err := os.Open(fifo) // waits for a writer
				if err == nil {
					if _, err = f.Read(make([]byte, 1)); err == nil {
						err = errors.New("read data from a capture that did not start")
					}
					f.Close()
				}
				readerDone <- err
			}()
			got := runRingcap(t, nil, append([]string{"extcap", "--capture", "--fifo", fifo}, tt.args...)...)
			lines := bytes.Count([]byte(got.stderr), []byte("\n"))
			if got.code != tt.code || lines != 1 || !bytes.Contains([]byte(got.stderr), []byte(tt.error)) {
				t.Errorf("exit %d, stderr %q; want exit %d and one line with %q", got.code, got.stderr, tt.code, tt.error)
			}
			select {
			case err := <-readerDone:
				if !errors.Is(err, io.EOF) {
					t.Errorf("the reader got %v, want the end of the pipe", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the reader still waits on the pipe")
			}
		})
	}
}
