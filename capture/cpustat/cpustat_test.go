package cpustat

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Spinning a thread on every CPU shows in both clocks. Each thread spins
// until it has used its share of CPU time, not for a time on the wall
// clock, so that other processes keeping the CPUs busy only make the
// test take longer.
func TestBusy(t *testing.T) {
	m0, err := Machine()
	if err != nil {
		t.Fatal(err)
	}
	p0, err := Process()
	if err != nil {
		t.Fatal(err)
	}
	const spin = 300 * time.Millisecond
	errs := make(chan error)
	for range runtime.NumCPU() {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			errs <- spinFor(spin)
		}()
	}
	for range runtime.NumCPU() {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	m1, err := Machine()
	if err != nil {
		t.Fatal(err)
	}
	p1, err := Process()
	if err != nil {
		t.Fatal(err)
	}
	// Both clocks count in ticks of the kernel's USER_HZ, 10ms: allow
	// one a CPU.
	want := (spin - 10*time.Millisecond) * time.Duration(runtime.NumCPU())
	if p1-p0 < want || m1-m0 < want {
		t.Errorf("spun %v on each of %d CPUs: process %v, machine %v; want at least %v each", spin, runtime.NumCPU(), p1-p0, m1-m0, want)
	}
}

// spinFor keeps the calling thread, which must be locked to its
// goroutine, busy until it has used d of CPU time.
func spinFor(d time.Duration) error {
	used := func() (time.Duration, error) {
		var ru unix.Rusage
		if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
			return 0, err
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
	}
	start, err := used()
	if err != nil {
		return err
	}
	for {
		now, err := used()
		if err != nil {
			return err
		}
		if now-start >= d {
			return nil
		}
	}
}
