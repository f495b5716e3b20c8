package cpustat

import (
	"runtime"
	"testing"
	"time"
)

// Spinning on every CPU for half a second shows in both clocks.
func TestBusy(t *testing.T) {
	m0, err := Machine()
	if err != nil {
		t.Fatal(err)
	}
	p0, err := Process()
	if err != nil {
		t.Fatal(err)
	}
	const spin = 500 * time.Millisecond
	done := make(chan struct{})
	for range runtime.NumCPU() {
		go func() {
			for end := time.Now().Add(spin); time.Now().Before(end); {
			}
			done <- struct{}{}
		}()
	}
	for range runtime.NumCPU() {
		<-done
	}
	m1, _ := Machine()
	p1, _ := Process()
	// Other processes may be busy too, and a CPU may be taken from us;
	// but half of what we spun must show.
	want := spin * time.Duration(runtime.NumCPU()) / 2
	if p1-p0 < want || m1-m0 < want {
		t.Errorf("spun %v on %d CPUs: process %v, machine %v; want at least %v each", spin, runtime.NumCPU(), p1-p0, m1-m0, want)
	}
}
