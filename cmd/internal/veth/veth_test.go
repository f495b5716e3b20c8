package veth

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf/bpftest"
)

// Senders are pinned only to CPUs the process may use, which under a
// cpuset need not start at 0.
func TestAllowedCPUs(t *testing.T) {
	all, err := AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != runtime.NumCPU() {
		t.Fatalf("allowedCPUs = %v, but Go counts %d CPUs", all, runtime.NumCPU())
	}
	// Restrict this thread to the last CPU alone, as a cpuset would.
	runtime.LockOSThread() // never unlocked: the thread is discarded with the test
	last := all[len(all)-1]
	var set unix.CPUSet
	set.Set(last)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	if got, err := AllowedCPUs(); err != nil || !slices.Equal(got, []int{last}) {
		t.Errorf("restricted to CPU %d, allowedCPUs = %v, %v", last, got, err)
	}
}

// A process started in Do with Pdeathsig lives on after Do returns: the
// thread Do ran on goes back to the runtime instead of ending, which
// would kill the process; and it comes back in its own namespace, on its
// own CPUs.
func TestDoKeepsThread(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("RINGCAP_REQUIRE_PRIV") == "1" {
			t.Fatal("test needs root and RINGCAP_REQUIRE_PRIV=1 is set")
		}
		t.Skip("test needs root")
	}
	n, err := New(Config{Name: fmt.Sprintf("ringcap-veth-%d", os.Getpid()), Prefix: "vt"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	here, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	err = Do(n.Rx, func() error {
		var set unix.CPUSet
		set.Set(0)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return err
		}
		cmd = exec.Command("sleep", "60")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		return cmd.Start()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// Every thread of the process, Do's among them, is back here.
	for range 20 {
		if err := Do(n.Tx, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		ns, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net")
		if err == nil && ns != here {
			t.Errorf("thread %s is in %s, not %s", task.Name(), ns, here)
		}
	}
	time.Sleep(100 * time.Millisecond) // a Pdeathsig would have been sent at once
	var ws unix.WaitStatus
	if pid, err := unix.Wait4(cmd.Process.Pid, &ws, unix.WNOHANG, nil); pid != 0 || err != nil {
		t.Errorf("the process started in Do ended (%v, %v): its thread ended", ws, err)
	}
}

// A crowd's namespace holds both ends of every pair at the MTU asked
// for, up, beside its loopback, and is gone after Close.
func TestNewCrowd(t *testing.T) {
	bpftest.RequirePrivileges(t)
	name := fmt.Sprintf("ringcap-crowd-%d", os.Getpid())
	c, err := NewCrowd(name, 3, 9000)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "-n", name, "-j", "link", "show").Output()
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	var links []struct {
		Name  string   `json:"ifname"`
		MTU   int      `json:"mtu"`
		Flags []string `json:"flags"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range links {
		if !slices.Contains(l.Flags, "UP") || (l.Name != "lo" && l.MTU != 9000) {
			t.Errorf("%s: MTU %d, flags %v; want up at MTU 9000", l.Name, l.MTU, l.Flags)
		}
		got = append(got, l.Name)
	}
	slices.Sort(got)
	if want := []string{"lo", "rc-m0-a", "rc-m0-b", "rc-m1-a", "rc-m1-b", "rc-m2-a", "rc-m2-b"}; !slices.Equal(got, want) {
		t.Errorf("links %v, want %v", got, want)
	}
	if _, err := os.Stat("/run/netns/" + name); !os.IsNotExist(err) {
		t.Errorf("namespace %s still there after Close: %v", name, err)
	}
}
