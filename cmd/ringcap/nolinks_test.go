package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	cbpf "golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf/bpftest"
)

// noLinksEnv makes the test binary a wrapper that runs its arguments
// with the kernel refusing to create bpf links, as a kernel before 6.6
// refuses a tcx link (EINVAL): the way to test, on this kernel, what
// ringcap says on one without tcx.
const noLinksEnv = "RINGCAP_TEST_NO_BPF_LINKS"

// runWithoutBPFLinks installs a seccomp filter that fails bpf(2)'s
// BPF_LINK_CREATE with EINVAL, on every thread, and executes os.Args[1:].
// It is written out here because no library in the module's set makes
// seccomp filters; the classic BPF comes from golang.org/x/net/bpf.
func runWithoutBPFLinks() {
	const (
		auditArchX86_64 = 0xc000003e
		retAllow        = 0x7fff0000 // SECCOMP_RET_ALLOW
		retErrno        = 0x00050000 // SECCOMP_RET_ERRNO
	)
	insns, err := cbpf.Assemble([]cbpf.Instruction{
		cbpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		cbpf.JumpIf{Cond: cbpf.JumpNotEqual, Val: auditArchX86_64, SkipTrue: 5},
		cbpf.LoadAbsolute{Off: 0, Size: 4}, // nr
		cbpf.JumpIf{Cond: cbpf.JumpNotEqual, Val: unix.SYS_BPF, SkipTrue: 3},
		cbpf.LoadAbsolute{Off: 16, Size: 4}, // args[0], its low half
		cbpf.JumpIf{Cond: cbpf.JumpNotEqual, Val: unix.BPF_LINK_CREATE, SkipTrue: 1},
		cbpf.RetConstant{Val: retErrno | uint32(unix.EINVAL)},
		cbpf.RetConstant{Val: retAllow},
	})
	if err == nil {
		filters := make([]unix.SockFilter, len(insns))
		for i, ins := range insns {
			filters[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
		}
		prog := unix.SockFprog{Len: uint16(len(filters)), Filter: &filters[0]}
		if err = unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err == nil {
			_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC,
				uintptr(unsafe.Pointer(&prog)))
			if errno != 0 {
				err = errno
			}
		}
	}
	if err == nil {
		err = syscall.Exec(os.Args[1], os.Args[1:], os.Environ())
	}
	fmt.Fprintln(os.Stderr, "without bpf links:", err)
	os.Exit(3)
}

// On a kernel without tcx, a capture that needs a tc hook stops before
// anything is created, with one line that names what is needed and the
// way out.
func TestNoTCX(t *testing.T) {
	bpftest.RequirePrivileges(t)
	if runtime.GOARCH != "amd64" {
		t.Skip("the seccomp filter is written for x86-64")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "none.pcapng")
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"hook tc", []string{"-Q", "in", "--hook", "tc"},
			"attach lo tcx ingress: this kernel has no tcx links, which ringcap's tc hooks need: capture inbound frames at XDP with -Q in --hook xdp, or run Linux 6.6 or later"},
		{"outbound", []string{"-Q", "out"},
			"attach lo tcx egress: this kernel has no tcx links, which ringcap's tc hooks need: sent frames need Linux 6.6 or later; -Q in --hook xdp captures the received ones"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(noLinksEnv, "1")
			r := runCommand(t, self, append([]string{binary, "record", "-i", "lo", "-w", out}, tt.args...)...)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if r.code != exitRuntime || len(lines) != 1 || lines[0] != "ringcap: "+tt.want {
				t.Errorf("exit %d, stderr %q; want %d and the one line %q", r.code, r.stderr, exitRuntime, "ringcap: "+tt.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("the refused capture created %s", out)
			}
		})
	}
}
