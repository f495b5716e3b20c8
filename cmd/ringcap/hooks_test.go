package main

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// kernelLog follows the kernel's log from when it is made: only records
// logged after count, not those still in the ring from before.
type kernelLog struct{ fd int }

func followKernelLog(t *testing.T) *kernelLog {
	t.Helper()
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open the kernel's log: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.Seek(fd, 0, io.SeekEnd); err != nil {
		t.Fatalf("seek to the kernel log's end: %v", err)
	}
	return &kernelLog{fd}
}

// warnings returns the kernel's WARNINGs logged since the last call, or
// since the log was followed.
func (k *kernelLog) warnings(t *testing.T) []string {
	t.Helper()
	var found []string
	buf := make([]byte, 8192) // a record at most
	for {
		n, err := unix.Read(k.fd, buf)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return found
		case errors.Is(err, unix.EPIPE):
			continue // records overwritten before they were read
		case err != nil:
			t.Fatalf("read the kernel's log: %v", err)
		}
		if rec := string(buf[:n]); strings.Contains(rec, "WARNING:") {
			found = append(found, strings.TrimSpace(rec))
		}
	}
}

// Where the driver runs no XDP itself (VXLAN, loopback), --hook auto
// captures received frames at tcx ingress and says so, never in generic
// mode, and the kernel warns of nothing.
func TestNoNativeXDPTakesTCX(t *testing.T) {
	p := newVethPairMTU(t, 9000)
	p.addOverlay(t, tunnel{"vxlan", "vxlan", []string{"id", "42", "local", "LOCAL", "remote", "REMOTE", "dstport", "4789", "dev", "DEV"},
		"198.18.0.1", "198.18.0.2"}, 1500)
	klog := followKernelLog(t)
	path := filepath.Join(t.TempDir(), "overlay.pcapng")
	r := p.startRecord(t, "-Q", "in", "-i", "rc-ov", "-i", "lo", "-w", path, "--all", "icmp")
	for _, ifc := range []string{"rc-ov", "lo"} {
		want := "capturing on " + ifc + " (inbound, tcx ingress; its driver offers no native XDP here)"
		if !waitFor(5*time.Second, func() bool { return strings.Contains(r.errors(), want) }) {
			t.Errorf("no line %q:\n%s", want, r.errors())
		}
	}
	if out, err := exec.Command("ip", "netns", "exec", p.Tx, "ping", "-c", "1", "-W", "2", "-s", "1472", overlayRx).CombinedOutput(); err != nil {
		t.Fatalf("ping over the overlay: %v\n%s", err, out)
	}
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	if rows := pcapngtest.Fields(t, path, "frame.interface_name", "frame.len"); len(rows) != 1 || rows[0][0] != "rc-ov" || rows[0][1] != "1514" {
		t.Errorf("frames (interface, length) = %v, want the echo request on rc-ov, 1514 bytes", rows)
	}
	if w := klog.warnings(t); len(w) > 0 {
		t.Errorf("the kernel warned during the capture:\n%s", strings.Join(w, "\n"))
	}
}

// The machine's own NIC, on the virtual machines ringcap is tested on,
// is virtio_net with receive offloads the guest cannot turn off: native
// XDP is refused, and generic XDP would make the kernel warn. Only checks
// that send nothing and change nothing touch it: the listing, --mode
// native refused before anything is attached, and a second's capture at
// tcx ingress of whatever passes.
func TestVirtioNetTakesTCX(t *testing.T) {
	bpftest.RequirePrivileges(t)
	const nic = "eth0"
	driver, err := filepath.EvalSymlinks("/sys/class/net/" + nic + "/device/driver")
	if err != nil || filepath.Base(driver) != "virtio_net" {
		t.Skipf("%s is no virtio_net device here", nic)
	}
	const why = "virtio_net refuses native XDP here: the host applies GRO_HW or checksum offloads to received frames, which the guest cannot turn off"
	r := runRingcap(t, nil, "interfaces")
	var line string
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.Contains(l, "."+nic+" [") {
			line = l
		}
	}
	if !strings.Contains(line, "inbound at tcx ingress ("+why+")") {
		t.Skipf("the host offers %s's guest a way to turn its offloads off: %q", nic, line)
	}
	klog := followKernelLog(t)
	dir := t.TempDir()
	r = runRingcap(t, nil, "record", "-i", nic, "-Q", "in", "--mode", "native", "--duration", "1s", "-w", filepath.Join(dir, "native.pcapng"))
	if want := "ringcap: attach " + nic + " in native mode: " + why + ": --hook tc captures its received frames at tcx ingress instead\n"; r.code != exitRuntime || r.stderr != want {
		t.Errorf("--mode native: exit %d, stderr %q; want 1 and %q", r.code, r.stderr, want)
	}
	r = runRingcap(t, nil, "record", "-i", nic, "-Q", "in", "--all", "--duration", "1s", "-q", "-w", filepath.Join(dir, "tcx.pcapng"))
	if want := "capturing on " + nic + " (inbound, tcx ingress; " + why + ")"; r.code != 0 || !strings.Contains(r.stderr, want) {
		t.Errorf("exit %d, want 0 and the line %q:\n%s", r.code, want, r.stderr)
	}
	if w := klog.warnings(t); len(w) > 0 {
		t.Errorf("the kernel warned:\n%s", strings.Join(w, "\n"))
	}
}
