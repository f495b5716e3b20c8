package capture

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/bpf/bpftest"
)

// testRings are rings read by one reader, each with a ringWriter whose
// records say by their length which ring they are in, and by their first
// eight bytes, where an event has its timestamp, what timestamp they
// have.
type testRings struct {
	maps    []*ebpf.Map
	writers []*ebpf.Program
	r       *reader
}

// newTestRings makes n rings of size bytes each and their reader, and a
// writer per ring if writers.
func newTestRings(t *testing.T, n int, size uint32, writers bool) *testRings {
	t.Helper()
	bpftest.RequirePrivileges(t)
	if bpf.EventTsOffset != 0 {
		t.Fatalf("ringWriter writes the timestamp at offset 0, the event has it at %d", bpf.EventTsOffset)
	}
	tr := &testRings{}
	for range n {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: size})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		tr.maps = append(tr.maps, m)
	}
	r, err := newReader(tr.maps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	tr.r = r
	if writers {
		for i, m := range tr.maps {
			tr.writers = append(tr.writers, ringWriter(t, m, recordSize(i), false))
		}
	}
	return tr
}

// recordSize is the length of ring i's records; ringOfRecord the ring of
// a record.
func recordSize(ring int) int32 { return int32(16 + 8*ring) }

func ringOfRecord(rec []byte) int { return (len(rec) - 16) / 8 }

// stored is how many bytes of its ring a record of ring i takes.
func stored(ring int) int { return ringHeaderSize + int(recordSize(ring)) }

// rec is a record as the tests see it: its ring and its timestamp.
type rec struct {
	ring int
	ts   uint64
}

func (r rec) String() string { return fmt.Sprintf("ring %d ts %d", r.ring, r.ts) }

func recOf(raw []byte) rec {
	if len(raw) < bpf.EventTsOffset+8 {
		return rec{ring: -1} // not a record ringWriter writes
	}
	return rec{ringOfRecord(raw), binary.NativeEndian.Uint64(raw[bpf.EventTsOffset:])}
}

// write puts records into their rings, each ring's in the order given.
func (tr *testRings) write(t *testing.T, recs ...rec) {
	t.Helper()
	for _, r := range recs {
		runWith(t, tr.writers[r.ring], r.ts)
	}
}

// readAll reads until the deadline, which must be set, and returns the
// records read.
func (tr *testRings) readAll(t *testing.T) []rec {
	t.Helper()
	var got []rec
	for {
		r, byItself, err := tr.next(t, 5*time.Second)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return got
		}
		if err != nil {
			t.Fatalf("after %d records: %v", len(got), err)
		}
		if !byItself {
			t.Fatalf("after %d records, Next waited until a Flush", len(got))
		}
		got = append(got, r)
	}
}

// next calls Next, and flushes the reader if Next has not returned within
// bound; byItself says Next returned before that. Next must return soon
// after the Flush: the test fails, rather than hang, if it does not.
func (tr *testRings) next(t *testing.T, bound time.Duration) (got rec, byItself bool, err error) {
	t.Helper()
	start := time.Now()
	timer := time.AfterFunc(bound, func() { tr.r.Flush() })
	raw, err := tr.r.Next()
	byItself = timer.Stop()
	if took := time.Since(start); took > bound+afterFlush {
		t.Fatalf("Next took %v, with a Flush after %v", took, bound)
	}
	if err == nil {
		got = recOf(raw)
	}
	return got, byItself, err
}

const (
	// afterFlush bounds the time Next takes to return after a Flush.
	afterFlush = 5 * time.Second
	// longHold is how far ahead of the clock a record's timestamp is
	// for it to wait for quiet rings longer than any test; a reader
	// that does not end the wait when it should makes the test fail
	// after it, rather than hang.
	longHold = 4 * afterFlush
)

// monoNow is CLOCK_MONOTONIC, the programs' clock, read apart from the
// reader's own reading of it.
func monoNow() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err) // only for a clock Linux does not have
	}
	return uint64(ts.Nano())
}

// threadCPU is the CPU time the calling thread has used.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		panic(err) // only for a kernel without RUSAGE_THREAD, 2.6.26
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func byTs(a, b rec) int { return cmp.Compare(a.ts, b.ts) }
