// Package bpftest holds what ringcap's tests share: the gates for tests
// that need root or a tool, a network namespace of the test's own, the
// -update flag for golden files, test runs of the program, and the state
// of files ringcap must leave alone.
package bpftest

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// RequirePrivileges skips t when the process cannot load BPF programs, or
// fails it when RINGCAP_REQUIRE_PRIV=1 (CI), where a skip would hide a
// missing test.
func RequirePrivileges(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("RINGCAP_REQUIRE_PRIV") == "1" {
		t.Fatal("test needs root and RINGCAP_REQUIRE_PRIV=1 is set")
	}
	t.Skip("test needs root (set RINGCAP_REQUIRE_PRIV=1 to make this a failure)")
}

// InNewNetns moves the calling test's goroutine, locked to its thread,
// into a network namespace of its own, so that what the test attaches or
// adds there touches nothing outside. The thread is discarded when the
// test returns, and the namespace with it.
func InNewNetns(t testing.TB) {
	t.Helper()
	RequirePrivileges(t)
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare network namespace: %v", err)
	}
}

// Update is -update: tests rewrite their golden files instead of comparing
// with them. It is defined here, in the package every test package
// imports, so that `go test ./... -update` is understood by all of them.
var Update = flag.Bool("update", false, "rewrite golden files")

// RequireTool skips t when the command is not installed, or fails it when
// RINGCAP_REQUIRE_PRIV=1 (CI, where .ci/run installs it).
func RequireTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return
	}
	if os.Getenv("RINGCAP_REQUIRE_PRIV") == "1" {
		t.Fatalf("%s is not installed (.ci/run installs it)", name)
	}
	t.Skipf("%s is not installed", name)
}

// The verdicts ringcap's programs return for every frame: XDP_PASS, and
// tcx's TCX_NEXT (-1), which leaves the verdict to the programs after.
const (
	xdpPass = 2
	tcxNext = 0xffffffff
)

// RunTimes feeds frame to the program prog times times through
// BPF_PROG_TEST_RUN and checks that every run passed the frame on.
//
// Each run is a test run of its own, never one with Repeat: a signal (the
// Go runtime sends them) interrupts a repeated run part way, after the
// kernel has already run the program some times, and cilium/ebpf then
// starts the whole run again, so counters and ring records would count
// some frames twice. A single run is never restarted: the kernel checks
// for signals only between repetitions.
func RunTimes(prog *ebpf.Program, frame []byte, times int) error {
	opts := ebpf.RunOptions{Data: frame}
	want, name := uint32(xdpPass), "XDP_PASS"
	if prog.Type() == ebpf.SchedCLS {
		want, name = tcxNext, "TCX_NEXT"
	}
	for range times {
		ret, err := prog.Run(&opts)
		if err != nil {
			return fmt.Errorf("test run: %w", err)
		}
		if ret != want {
			return fmt.Errorf("program returned %d, want %s (%d)", int32(ret), name, int32(want))
		}
	}
	return nil
}

// PathState is what a test remembers of something ringcap must leave as
// it was: what it is and its permissions, whose, which inode, what device
// it is, where a link leads, what a regular file holds.
type PathState struct {
	Mode     fs.FileMode
	UID, GID uint32
	Ino      uint64
	Rdev     uint64
	Link     string
	Data     string
}

// StateOf reads path's state, never following a link.
func StateOf(t testing.TB, path string) PathState {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	s := PathState{Mode: info.Mode(), UID: st.Uid, GID: st.Gid, Ino: st.Ino, Rdev: st.Rdev}
	switch {
	case info.Mode()&fs.ModeSymlink != 0:
		s.Link, err = os.Readlink(path)
	case info.Mode().IsRegular():
		var b []byte
		b, err = os.ReadFile(path)
		s.Data = string(b)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Untouched fails t if path is not as before.
func Untouched(t testing.TB, path string, before PathState) {
	t.Helper()
	if after := StateOf(t, path); after != before {
		t.Errorf("%s changed: %+v, was %+v", path, after, before)
	}
}
