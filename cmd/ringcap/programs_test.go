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
	"github.com/ringcap/ringcap/cmd/internal/veth"
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

// vethNamespace makes a network namespace of pairs veth pairs at mtu,
// both ends in it and up (2*pairs interfaces), removed when t ends.
func vethNamespace(t *testing.T, pairs, mtu int) string {
	t.Helper()
	nsSeq++
	crowd, err := veth.NewCrowd(fmt.Sprintf("ringcap-%d-%d-many", os.Getpid(), nsSeq), pairs, mtu)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(crowd.Close)
	return crowd.Name
}

// -i any attaches one instance of each build to every interface: the
// programs loaded do not grow with the interfaces. In native mode, the
// XDP programs bound to a device (for the VLAN tags its driver takes out)
// are one per device, for 16 devices, and each interface past them says
// so; at MTU 9000 veth refuses the single-buffer build first, and the
// bound one it refused is let go, not counted.
func TestAnyProgramCount(t *testing.T) {
	bpftest.RequirePrivileges(t)
	bpftest.RequireTool(t, "strace")
	for _, tt := range []struct {
		mode string
		mtu  int
	}{{"auto", 1500}, {"native", 1500}, {"native", 9000}} {
		mode := tt.mode
		t.Run(fmt.Sprintf("%s/mtu=%d", tt.mode, tt.mtu), func(t *testing.T) {
			var first int
			for i, pairs := range []int{20, 100} {
				ns := vethNamespace(t, pairs, tt.mtu)
				path := filepath.Join(t.TempDir(), "any.pcapng")
				// It ends by the duration, once every interface is
				// attached.
				loads, r := programsLoaded(t, "record", "-i", "any", "--netns", ns, "--mode", mode, "--duration", "1s", "-q", "-w", path)
				if r.code != 0 {
					t.Fatalf("%d pairs: exit %d\n%s", pairs, r.code, r.stderr)
				}
				// Loopback too, but in native mode, which it has not.
				want := 2 * pairs
				if mode == "auto" {
					want++
				}
				t.Logf("%d pairs, --mode %s: %d programs loaded", pairs, mode, loads)
				if got := strings.Count(r.stderr, "ringcap: capturing on "); got != want {
					t.Fatalf("%d pairs: %d first lines, want one for each of the %d interfaces:\n%s", pairs, got, want, r.stderr)
				}
				if i == 0 {
					first = loads
				} else if loads != first {
					t.Errorf("%d pairs loaded %d programs, 20 pairs %d", pairs, loads, first)
				}
				capped := strings.Count(r.stderr, "ringcap binds programs to at most 16 devices")
				switch {
				case mode == "auto" && (loads > 3 || capped > 0):
					t.Errorf("%d pairs at tcx: %d programs loaded, %d interfaces past the cap on bound ones; want at most 3 and none", pairs, loads, capped)
				case mode == "native" && capped != 2*pairs-16:
					t.Errorf("%d pairs in native mode: %d interfaces say they are past the cap on bound programs, want %d", pairs, capped, 2*pairs-16)
				}
			}
		})
	}
}
