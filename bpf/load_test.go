package bpf

import "testing"

func TestWakeupShift(t *testing.T) {
	for _, tc := range []struct {
		ring, wakeup uint32
		want         uint64
	}{
		{64 << 20, 0, 21},        // a quarter, 16 MiB: steps of 2 MiB
		{8 << 20, 0, 18},         // the program's defaults
		{1 << 31, 0, 26},         // the largest ring
		{4096, 0, 7},             // one page: 1 KiB, steps of 128 bytes
		{64 << 20, 1, 3},         // every record
		{64 << 20, 3 << 20, 18},  // an eighth is 384 KiB: 256 KiB
		{64 << 20, 60 << 20, 20}, // a quarter of the 4 MiB left: 1 MiB
		{64 << 20, 64 << 20, 23}, // no room above it: an eighth
	} {
		c := Config{RingSize: tc.ring, WakeupBytes: tc.wakeup}
		if got := c.wakeupShift(); got != tc.want {
			t.Errorf("ring %d, wakeup at %d: shift %d, want %d", tc.ring, c.wakeupBytes(), got, tc.want)
		}
	}
}
