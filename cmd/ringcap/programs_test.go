package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// manyInterfaces writes a capture of n interfaces with a frame on each of
// the first withFrames and on the last, from the corpus' generator.
func manyInterfaces(t *testing.T, n, withFrames int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), fmt.Sprintf("interfaces-%d-%d.pcapng", n, withFrames))
	gen := exec.Command("go", "run", "./gen", "interfaces", strconv.Itoa(n), strconv.Itoa(withFrames), path)
	gen.Dir = testdata
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("generate %s: %v\n%s", path, err, out)
	}
	return path
}

// ringcapLoad is a program of ringcap's that the kernel took, as strace
// prints the bpf(2) call; cilium/ebpf's feature probes, which vary from
// run to run, are not named so.
var ringcapLoad = regexp.MustCompile(`bpf\(BPF_PROG_LOAD, \{prog_type=[A-Z_]+, .*prog_name="ringcap_`)

// programsLoaded runs ringcap under strace and counts the programs of its
// own it loaded.
func programsLoaded(t *testing.T, args ...string) (int, result) {
	t.Helper()
	trace := filepath.Join(t.TempDir(), "strace.txt")
	r := runCommand(t, "strace", append([]string{"-f", "-qq", "-s", "64", "-e", "trace=bpf", "-e", "status=successful", "-o", trace, binary}, args...)...)
	out, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	return len(ringcapLoad.FindAll(out, -1)), r
}

// A replay loads a fixed handful of programs, whatever the number of
// interfaces in the file: a file of many interface blocks must not make
// the kernel load (and, when ringcap exits, free) thousands of programs,
// which on Linux 6.18 can wedge BPF for the whole machine.
func TestReplayProgramCount(t *testing.T) {
	bpftest.RequirePrivileges(t)
	bpftest.RequireTool(t, "strace")
	replay := func(path string) (int, result, string) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "out.pcapng")
		n, r := programsLoaded(t, "replay", path, "-w", out)
		return n, r, out
	}
	var first int
	for i, n := range []int{1, 64, 512} {
		loads, r, out := replay(manyInterfaces(t, n, n))
		if r.code != 0 {
			t.Fatalf("%d interfaces: exit %d\n%s", n, r.code, r.stderr)
		}
		if got, _ := pcapngtest.Count(t, out, false); got != n {
			t.Errorf("%d interfaces: %d frames written, want one from each", n, got)
		}
		if i == 0 {
			first = loads
			if loads == 0 || loads > 4 {
				t.Fatalf("the replay of one interface loaded %d programs, want 1 to 4", loads)
			}
		} else if loads != first {
			// Fatal: the next file would load many more.
			t.Fatalf("the replay of %d interfaces loaded %d programs, of one %d", n, loads, first)
		}
	}
	// After the others, so that a regression fails on 512 first, before
	// it could load hundreds of thousands.
	loads, r, out := replay(manyInterfaces(t, 100_000, 600))
	if r.code != 0 || loads > first {
		t.Fatalf("100,000 interfaces: exit %d, %d programs loaded (one interface: %d)\n%s", r.code, loads, first, r.stderr)
	}
	if got, _ := pcapngtest.Count(t, out, false); got != 601 {
		t.Errorf("100,000 interfaces: %d frames written, want 601", got)
	}
	// A summary line for each interface that held frames, not 100,000.
	if lines := strings.Count(r.stderr, "\n"); lines > 610 {
		t.Errorf("the summary takes %d lines", lines)
	}
	// Frames on more interfaces than a replay counts apart: one line,
	// before any program is loaded.
	loads, r, _ = replay(manyInterfaces(t, 5000, 5000))
	if r.code != exitRuntime || loads != 0 || strings.Count(r.stderr, "\n") != 1 ||
		!strings.Contains(r.stderr, "holds frames of 5000 interfaces, more than the 4096 a replay counts apart: split it") {
		t.Errorf("5,000 interfaces with frames: exit %d, %d programs loaded, stderr:\n%s", r.code, loads, r.stderr)
	}
}
