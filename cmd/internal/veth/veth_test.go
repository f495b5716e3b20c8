package veth

import (
	"runtime"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
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
