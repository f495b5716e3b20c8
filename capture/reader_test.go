package capture

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// Records spread over the rings come out all, each once, in the order of
// their timestamps, however they are spread, round after round while the
// rings wrap around.
func TestReaderMergesRings(t *testing.T) {
	spreads := []struct {
		name   string
		ringOf func(rng *rand.Rand, k, rings, prev int) int
	}{
		{"round robin", func(_ *rand.Rand, k, rings, _ int) int { return k % rings }},
		{"random", func(rng *rand.Rand, _, rings, _ int) int { return rng.IntN(rings) }},
		{"runs", func(rng *rand.Rand, _, rings, prev int) int {
			if rng.IntN(8) == 0 {
				return rng.IntN(rings)
			}
			return prev
		}},
		{"one busy ring", func(rng *rand.Rand, _, rings, _ int) int {
			if rng.IntN(10) == 0 {
				return rng.IntN(rings)
			}
			return rings - 1
		}},
	}
	const size, rounds, perRound = 16 << 10, 4, 250
	for _, rings := range []int{1, 2, 5} {
		t.Run(fmt.Sprintf("%d rings", rings), func(t *testing.T) {
			tr := newTestRings(t, rings, size, true)
			tr.r.SetDeadline(time.Now().Add(-time.Second))
			for _, spread := range spreads {
				t.Run(spread.name, func(t *testing.T) {
					rng := rand.New(rand.NewPCG(uint64(rings), 1))
					ring := 0
					for round := range rounds {
						// Older than quietWait: nothing waits.
						ts := monoNow() - uint64(time.Second)
						byRing := make([][]rec, rings)
						var want []rec
						for k := range perRound {
							ring = spread.ringOf(rng, k, rings, ring)
							ts += uint64(1 + rng.IntN(3))
							byRing[ring] = append(byRing[ring], rec{ring, ts})
							want = append(want, rec{ring, ts})
						}
						for _, recs := range byRing {
							tr.write(t, recs...)
						}
						got := tr.readAll(t)
						if !slices.Equal(got, want) {
							t.Fatalf("round %d: read %d records\n%v\nwant %d\n%v", round, len(got), got, len(want), want)
						}
						if used := tr.r.UsedAll(); used != 0 {
							t.Fatalf("round %d: %d bytes not given back once all is read", round, used)
						}
					}
				})
			}
		})
	}
}

// A head waits for a quiet ring until its timestamp is quietWait old,
// never less, and not much more; heads older than that go out without a
// wait.
func TestReaderWaitsForQuietRings(t *testing.T) {
	tests := []struct {
		name    string
		age     time.Duration // of each record when written
		records int
		// within bounds the time to read them all: generous, for a
		// loaded machine.
		within time.Duration
	}{
		{"fresh", 0, 5, 5 * time.Second},
		{"fresher than quietWait", quietWait / 2, 5, 5 * time.Second},
		// Were they to wait quietWait each, they would take 2s.
		{"old", 10 * quietWait, 2000, 2000 * quietWait / 2},
	}
	// Ring 0 has the records, ring 1 stays quiet.
	tr := newTestRings(t, 2, 128<<10, false)
	tr.writers = []*ebpf.Program{ringWriter(t, tr.maps[0], recordSize(0), false)}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want []rec
			for range tt.records {
				r := rec{0, monoNow() - uint64(tt.age)}
				tr.write(t, r)
				want = append(want, r)
			}
			start, longest := time.Now(), uint64(0)
			for i, w := range want {
				got, byItself, err := tr.next(t, tt.within)
				if err != nil || got != w {
					t.Fatalf("record %d: %v, %v; want %v", i, got, err, w)
				}
				if !byItself {
					t.Fatalf("record %d of %s waited more than %v", i, time.Duration(tt.age), tt.within)
				}
				now := monoNow()
				if now < w.ts+uint64(quietWait) {
					t.Fatalf("record %d handed out %v after its timestamp, before a quiet ring could no longer bring an older one (%v)",
						i, time.Duration(now-w.ts), quietWait)
				}
				longest = max(longest, now-w.ts)
			}
			if took := time.Since(start); took > tt.within {
				t.Fatalf("%d records %v old when written took %v to read, want less than %v", tt.records, tt.age, took, tt.within)
			}
			t.Logf("%d records %v old when written: handed out at most %v after their timestamp", tt.records, tt.age, time.Duration(longest))
			tr.r.SetDeadline(time.Now())
			if got := tr.readAll(t); len(got) != 0 {
				t.Fatalf("records left: %v", got)
			}
			tr.r.SetDeadline(time.Time{})
		})
	}
}

// A record that comes to a quiet ring while a younger head waits for it
// goes out first, as soon as it comes: the program's wakeup ends the
// head's wait.
func TestReaderQuietRingOvertakesHead(t *testing.T) {
	tr := newTestRings(t, 2, 16<<10, true)
	// A head whose wait is long enough for the test to write the other
	// ring's record during it, however loaded the machine.
	const hold = time.Second
	young := rec{0, monoNow() + uint64(hold)}
	tr.write(t, young)
	type result struct {
		got rec
		at  uint64
		cpu time.Duration // the reader's thread's, in Next
		err error
	}
	results, done := make(chan result, 2), make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for range 2 {
			start := threadCPU()
			raw, err := tr.r.Next()
			res := result{err: err, at: monoNow(), cpu: threadCPU() - start}
			if err == nil {
				res.got = recOf(raw)
			}
			results <- res
		}
	}()
	// Next must be over before the reader closes, also on failure.
	defer func() { tr.r.Flush(); <-done }()
	time.Sleep(20 * time.Millisecond) // Next waits
	older := rec{1, young.ts - 1}
	tr.write(t, older)
	first := <-results
	if first.err != nil || first.got != older {
		t.Fatalf("first record %v, %v; want %v", first.got, first.err, older)
	}
	if first.at >= young.ts {
		t.Fatalf("the record that came to the quiet ring went out only after the head's wait (%v late)", time.Duration(first.at-young.ts))
	}
	select {
	case second := <-results:
		if second.err != nil || second.got != young {
			t.Fatalf("second record %v, %v; want %v", second.got, second.err, young)
		}
		if second.at < young.ts+uint64(quietWait) {
			t.Fatalf("the head went out %v before its timestamp was quietWait old", time.Duration(young.ts+uint64(quietWait)-second.at))
		}
		// Its own ring, not empty, must not wake the reader again
		// and again while the head waits.
		if second.cpu > hold/4 {
			t.Fatalf("the reader spent %v of CPU time waiting %v for the head", second.cpu, hold)
		}
	case <-time.After(hold + 5*time.Second):
		t.Fatal("the head waits on")
	}
}

// SetSettled(true) hands a head out at once, however young, and
// SetSettled(false) makes heads wait for quiet rings again.
func TestReaderSettled(t *testing.T) {
	tr := newTestRings(t, 2, 16<<10, true)
	// A head that waits, waits for the Flush.
	young := func() rec { return rec{0, monoNow() + uint64(longHold)} }
	for _, settled := range []bool{true, false, true} {
		tr.r.SetSettled(settled)
		want := young()
		tr.write(t, want)
		got, byItself, err := tr.next(t, 200*time.Millisecond)
		if err != nil || got != want {
			t.Fatalf("settled %v: %v, %v; want %v", settled, got, err, want)
		}
		if byItself != settled {
			t.Fatalf("settled %v: the head went out by itself: %v", settled, byItself)
		}
		if !byItself {
			if _, err := tr.r.Next(); !errors.Is(err, errFlushed) {
				t.Fatalf("after the Flush: %v", err)
			}
		}
	}
}

// A Flush makes Next hand out the records in the rings at once, quiet
// rings or not, then return errFlushed; after that, heads wait for quiet
// rings again.
func TestReaderFlush(t *testing.T) {
	tr := newTestRings(t, 3, 16<<10, true)
	now := monoNow()
	// Ring 2 is quiet; the young record would wait for it past the test.
	old0, old1, young := rec{0, now - uint64(time.Second)}, rec{1, now - uint64(time.Second) + 1}, rec{0, now + uint64(longHold)}
	tr.write(t, old0, young, old1)
	if err := tr.r.Flush(); err != nil {
		t.Fatal(err)
	}
	for i, want := range []rec{old0, old1, young} {
		got, byItself, err := tr.next(t, 5*time.Second)
		if err != nil || got != want || !byItself {
			t.Fatalf("record %d after Flush: %v, %v, by itself %v; want %v", i, got, err, byItself, want)
		}
	}
	if _, byItself, err := tr.next(t, 5*time.Second); !errors.Is(err, errFlushed) || !byItself {
		t.Fatalf("Next once the records are read: %v, by itself %v", err, byItself)
	}

	// Flushed, the reader waits again; a Flush during the wait ends it.
	young = rec{1, monoNow() + uint64(longHold)}
	tr.write(t, young)
	got, byItself, err := tr.next(t, 100*time.Millisecond)
	if err != nil || got != young {
		t.Fatalf("young record: %v, %v; want %v", got, err, young)
	}
	if byItself {
		t.Fatal("the young record did not wait for the quiet rings after a Flush")
	}
	if _, err := tr.r.Next(); !errors.Is(err, errFlushed) {
		t.Fatalf("Next after the second Flush: %v", err)
	}
	if used := tr.r.UsedAll(); used != 0 {
		t.Fatalf("%d bytes not given back", used)
	}
}

// After Release, the next Next hands out the heads the reader had read
// but not handed out: nothing is lost, nothing comes twice, and the rings
// hold only the records not handed out.
func TestReaderRelease(t *testing.T) {
	const rings, records = 3, 24
	tr := newTestRings(t, rings, 16<<10, true)
	tr.r.SetDeadline(time.Now().Add(-time.Second))
	for _, readBefore := range []int{0, 1, 2, 7, records - 1, records} {
		t.Run(fmt.Sprintf("after %d", readBefore), func(t *testing.T) {
			base := monoNow() - uint64(time.Second)
			var want []rec
			for k := range records {
				want = append(want, rec{(k * 7 / 3) % rings, base + uint64(k)})
			}
			for ring := range rings {
				for _, r := range want {
					if r.ring == ring {
						tr.write(t, r)
					}
				}
			}
			for i := range readBefore {
				raw, err := tr.r.Next()
				if err != nil || recOf(raw) != want[i] {
					t.Fatalf("record %d: %v, %v; want %v", i, recOf(raw), err, want[i])
				}
			}
			left := 0
			for _, r := range want[readBefore:] {
				left += stored(r.ring)
			}
			for range 2 { // twice: as once
				tr.r.Release()
				if used := tr.r.UsedAll(); used != left {
					t.Fatalf("%d bytes in the rings after Release, want %d, the records not handed out", used, left)
				}
			}
			if got := tr.readAll(t); !slices.Equal(got, want[readBefore:]) {
				t.Fatalf("after Release: %v\nwant %v", got, want[readBefore:])
			}
			if used := tr.r.UsedAll(); used != 0 {
				t.Fatalf("%d bytes not given back once all is read", used)
			}
		})
	}
}

// With the rings empty, Next returns os.ErrDeadlineExceeded once the
// deadline has passed, and not before.
func TestReaderDeadline(t *testing.T) {
	for _, rings := range []int{1, 3} {
		tr := newTestRings(t, rings, 16<<10, false)
		for _, in := range []time.Duration{-time.Second, 0, 30 * time.Millisecond} {
			t.Run(fmt.Sprintf("%d rings, in %v", rings, in), func(t *testing.T) {
				deadline := time.Now().Add(in)
				tr.r.SetDeadline(deadline)
				for range 2 { // and again
					_, byItself, err := tr.next(t, 5*time.Second)
					if !errors.Is(err, os.ErrDeadlineExceeded) || !byItself {
						t.Fatalf("Next: %v, by itself %v; want %v", err, byItself, os.ErrDeadlineExceeded)
					}
					if early := time.Until(deadline); early > 0 {
						t.Fatalf("Next returned %v before the deadline", early)
					}
				}
			})
		}
	}
}

// Records of one timestamp in every ring all come out, after the older
// ones and before the younger, each ring's in the order written.
func TestReaderEqualTimestamps(t *testing.T) {
	const rings, each = 4, 5
	tr := newTestRings(t, rings, 16<<10, true)
	tr.r.SetDeadline(time.Now().Add(-time.Second))
	ts := monoNow() - uint64(time.Second)
	var want []rec
	for ring := range rings {
		var recs []rec
		if ring == 1 {
			recs = append(recs, rec{ring, ts - 1})
		}
		for range each {
			recs = append(recs, rec{ring, ts})
		}
		if ring == 2 {
			recs = append(recs, rec{ring, ts + 1})
		}
		tr.write(t, recs...)
		want = append(want, recs...)
	}
	got := tr.readAll(t)
	if !slices.IsSortedFunc(got, byTs) {
		t.Fatalf("out of order: %v", got)
	}
	slices.SortStableFunc(got, func(a, b rec) int { return a.ring - b.ring })
	if !slices.Equal(got, want) {
		t.Fatalf("read, by ring: %v\nwant %v", got, want)
	}
}

// A record with the latest timestamp there is, damaged or from a clock
// gone wrong, comes out like any other: no ring without a record ties
// with it.
func TestReaderLatestTimestamp(t *testing.T) {
	tr := newTestRings(t, 2, 16<<10, true)
	// Not settled: a record from the future, which no wait for the
	// quiet ring would let out, goes out at once.
	tr.r.SetDeadline(time.Now().Add(-time.Second))
	want := []rec{{0, monoNow()}, {1, math.MaxUint64}}
	tr.write(t, want...)
	if got := tr.readAll(t); !slices.Equal(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
}
