package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/writer/pcapngtest"
)

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
