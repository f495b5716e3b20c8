package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringcap/ringcap/bpf/bpftest"
)

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
