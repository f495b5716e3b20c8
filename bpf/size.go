package bpf

import (
	"fmt"
	"math/bits"
	"os"
)

// ValidateRingSize applies the kernel's rules for a ring buffer's size
// (ringbuf_map_alloc: a power of two and a multiple of the page size) and
// names the nearest sizes that pass, instead of letting the kernel answer
// EINVAL.
func ValidateRingSize(size uint64) error {
	page := uint64(os.Getpagesize())
	sizes := fmt.Sprintf("a power of two from the page size, %s, to %s", FormatSize(page), FormatSize(MaxRingSize))
	switch {
	case size > MaxRingSize:
		return fmt.Errorf("ring size %s is larger than the kernel allows: give %s", FormatSize(size), sizes)
	case size < page:
		return fmt.Errorf("ring size %s is smaller than a page: give %s", FormatSize(size), sizes)
	case size&(size-1) != 0:
		below := uint64(1) << (63 - bits.LeadingZeros64(size))
		return fmt.Errorf("ring size %s is not a power of two: use %s or %s (%s)",
			FormatSize(size), FormatSize(below), FormatSize(below*2), sizes)
	}
	// A power of two at least as large as the page size (itself a power
	// of two) is a multiple of it.
	return nil
}

func nextPowerOfTwo(n uint64) uint64 {
	if n <= 1 {
		return 1
	}
	return 1 << (64 - bits.LeadingZeros64(n-1))
}

// FormatSize prints a byte count the way --ring-size accepts it: in the
// largest binary unit that divides it exactly, else in bytes.
func FormatSize(n uint64) string {
	for _, u := range []struct {
		name  string
		shift uint
	}{{"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", n>>u.shift, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}
