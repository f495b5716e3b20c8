package bpf

import (
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
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

// Ring layout defaults: see DefaultRings and DefaultRingsSize.
const (
	// MaxDefaultRings caps the rings ringcap makes by default, one per
	// CPU: past it, CPUs share rings (docs/design.md, "Rings").
	MaxDefaultRings = 16
	// DefaultRingSize is what each ring gets by default, within
	// DefaultMinTotal and DefaultMaxTotal for all of them.
	DefaultRingSize = 4 << 20
	DefaultMinTotal = 8 << 20
	DefaultMaxTotal = 64 << 20
)

// DefaultRings is one ring per online CPU, up to MaxDefaultRings.
func DefaultRings() (int, error) {
	n, err := OnlineCPUs()
	if err != nil {
		return 0, err
	}
	return min(n, MaxDefaultRings), nil
}

// DefaultRingsSize is the memory the rings take in all by default.
func DefaultRingsSize(rings int) uint64 {
	return min(max(uint64(rings)*DefaultRingSize, DefaultMinTotal), DefaultMaxTotal)
}

// SplitRingSize is the size of each of rings rings that take total bytes
// in all: the largest power of two within total/rings, which the kernel
// requires of a ring. It checks it against the kernel's rules and a record
// of snaplen bytes; a size that fails is a *RingSizeError.
func SplitRingSize(total uint64, rings int, snaplen uint32) (uint32, error) {
	if rings < 1 {
		return 0, fmt.Errorf("%d rings", rings)
	}
	each := total / uint64(rings)
	if each > 0 {
		each = 1 << (63 - bits.LeadingZeros64(each))
	}
	record := uint64(Config{SnapLen: snaplen}.RecordSize())
	least := max(uint64(os.Getpagesize()), nextPowerOfTwo(record+1))
	if each > MaxRingSize || each < least {
		return 0, &RingSizeError{Total: total, Rings: rings, Each: each, Least: least, SnapLen: snaplen}
	}
	return uint32(each), nil
}

// RingSizeError is memory for the rings that, split over Rings rings,
// gives each one a size the kernel refuses or too small for a record.
type RingSizeError struct {
	Total   uint64 // the memory of all the rings
	Rings   int
	Each    uint64 // what each ring would get: a power of two
	Least   uint64 // the least a ring needs: a page, and a record of SnapLen
	SnapLen uint32
}

// TooLarge is whether each ring would be larger than the kernel allows,
// rather than too small.
func (e *RingSizeError) TooLarge() bool { return e.Each > MaxRingSize }

// Bound is the memory for all the rings that fixes it: the most when
// TooLarge, else the least.
func (e *RingSizeError) Bound() uint64 {
	if e.TooLarge() {
		return MaxRingSize * uint64(e.Rings)
	}
	return e.Least * uint64(e.Rings)
}

func (e *RingSizeError) Error() string {
	switch {
	case e.TooLarge():
		return fmt.Sprintf("ring size %s over %d rings is more than %s a ring, the kernel's largest",
			FormatSize(e.Total), e.Rings, FormatSize(MaxRingSize))
	case e.Rings == 1:
		return fmt.Sprintf("ring size %s is less than the %s a ring needs (a page, and a record of snaplen %d)",
			FormatSize(e.Total), FormatSize(e.Least), e.SnapLen)
	}
	return fmt.Sprintf("ring size %s over %d rings leaves %s a ring, less than the %s a ring needs (a page, and a record of snaplen %d)",
		FormatSize(e.Total), e.Rings, FormatSize(e.Each), FormatSize(e.Least), e.SnapLen)
}

// OnlineCPUs counts the CPUs online now, from the kernel's list. Read by
// hand: cilium/ebpf reads the list of possible CPUs only.
func OnlineCPUs() (int, error) {
	const path = "/sys/devices/system/cpu/online"
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("count CPUs: %w", err)
	}
	n, err := countCPUList(string(b))
	if err != nil {
		return 0, fmt.Errorf("count CPUs: %s: %w", path, err)
	}
	return n, nil
}

// countCPUList counts the CPUs of a kernel CPU list, "0-3,6".
func countCPUList(list string) (int, error) {
	n := 0
	for _, part := range strings.Split(strings.TrimSpace(list), ",") {
		first, last, isRange := strings.Cut(part, "-")
		lo, err1 := strconv.Atoi(first)
		hi, err2 := lo, error(nil)
		if isRange {
			hi, err2 = strconv.Atoi(last)
		}
		if err1 != nil || err2 != nil || lo < 0 || hi < lo {
			return 0, fmt.Errorf("%q is no CPU list", list)
		}
		n += hi - lo + 1
	}
	return n, nil
}

// PossibleCPUs is the number of CPUs the kernel may ever bring online, and
// so the CPU numbers the programs can run on.
func PossibleCPUs() (int, error) {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return 0, fmt.Errorf("count CPUs: %w", err)
	}
	return n, nil
}
