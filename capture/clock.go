package capture

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// clock converts the program's timestamps, bpf_ktime_get_ns(), which is
// CLOCK_MONOTONIC, into wall-clock time.
//
// Method: read CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_REALTIME back to back
// and take offset = midpoint(realtime) - monotonic. The offset is off by at
// most half the gap between the two realtime reads; the tightest of a few
// tries is kept, and a sample whose gap reaches maxSyncGap is not used, so
// the error bound is well under 1 ms (a few hundred ns through the vDSO).
// NTP slews both clocks alike, so the offset only moves when the wall clock
// is stepped; the reader resyncs about once a second, which bounds how long
// a step goes unnoticed.
type clock struct {
	offset int64 // ns to add to a monotonic time
	bound  int64 // error bound of offset, ns
}

const (
	syncTries  = 5
	maxSyncGap = int64(time.Millisecond)
)

func (c *clock) sync() error {
	best := int64(-1)
	for range syncTries {
		var r1, m, r2 unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_REALTIME, &r1); err != nil {
			return fmt.Errorf("read CLOCK_REALTIME: %w", err)
		}
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &m); err != nil {
			return fmt.Errorf("read CLOCK_MONOTONIC: %w", err)
		}
		if err := unix.ClockGettime(unix.CLOCK_REALTIME, &r2); err != nil {
			return fmt.Errorf("read CLOCK_REALTIME: %w", err)
		}
		gap := r2.Nano() - r1.Nano()
		if gap < 0 || gap >= maxSyncGap || (best >= 0 && gap >= best) {
			continue
		}
		best = gap
		c.offset = r1.Nano() + gap/2 - m.Nano()
		c.bound = gap/2 + 1
	}
	if best < 0 && c.bound == 0 {
		return fmt.Errorf("could not read the clocks within %v of each other", time.Duration(maxSyncGap))
	}
	return nil
}

func (c *clock) wall(monoNs uint64) time.Time {
	return time.Unix(0, int64(monoNs)+c.offset)
}
