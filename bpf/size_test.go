package bpf

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestCountCPUList(t *testing.T) {
	tests := []struct {
		list string
		want int // 0: refused
	}{
		{"0\n", 1},
		{"0-1\n", 2},
		{"0-3,6", 5},
		{"0,2,4-7", 6},
		{"", 0},
		{"3-1", 0},
		{"a-b", 0},
		{"-1", 0},
	}
	for _, tt := range tests {
		got, err := countCPUList(tt.list)
		if tt.want == 0 {
			if err == nil {
				t.Errorf("%q: %d CPUs, want it refused", tt.list, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: %d, %v; want %d", tt.list, got, err, tt.want)
		}
	}
}

func TestDefaultRingsSize(t *testing.T) {
	for rings, want := range map[int]uint64{1: 8 << 20, 2: 8 << 20, 3: 12 << 20, 16: 64 << 20, 64: 64 << 20} {
		if got := DefaultRingsSize(rings); got != want {
			t.Errorf("%d rings: %s, want %s", rings, FormatSize(got), FormatSize(want))
		}
	}
}

func TestSplitRingSize(t *testing.T) {
	page := uint64(os.Getpagesize())
	tests := []struct {
		total   uint64
		rings   int
		snaplen uint32
		want    uint64 // 0: refused
		bound   uint64 // in the refusal: the total that fixes it
		says    string // in the refusal
	}{
		{8 << 20, 1, 256, 8 << 20, 0, ""},
		{8 << 20, 2, 256, 4 << 20, 0, ""},
		{12 << 20, 2, 256, 4 << 20, 0, ""}, // 6 MiB a ring, rounded down
		{64 << 20, 16, 256, 4 << 20, 0, ""},
		{12 << 20, 3, 256, 4 << 20, 0, ""},
		{4 << 30, 2, 256, 2 << 30, 0, ""},
		{8 << 30, 2, 256, 0, 4 << 30, "ring size 8GiB over 2 rings is more than 2GiB a ring, the kernel's largest"},
		{page, 2, 256, 0, 2 * page, "over 2 rings leaves"},
		{64 << 10, 2, MaxSnapLen, 0, 256 << 10, "a record of snaplen 65557"},
		{64 << 10, 1, MaxSnapLen, 0, 128 << 10, "ring size 64KiB is less than the 128KiB a ring needs"},
	}
	for _, tt := range tests {
		got, err := SplitRingSize(tt.total, tt.rings, tt.snaplen)
		if tt.want == 0 {
			var sizeErr *RingSizeError
			if !errors.As(err, &sizeErr) || !strings.Contains(err.Error(), tt.says) || sizeErr.Bound() != tt.bound {
				t.Errorf("%s over %d rings: %d, %v; want a *RingSizeError saying %q, bound %s", FormatSize(tt.total), tt.rings, got, err, tt.says, FormatSize(tt.bound))
			}
			continue
		}
		if err != nil || uint64(got) != tt.want {
			t.Errorf("%s over %d rings: %d, %v; want %s", FormatSize(tt.total), tt.rings, got, err, FormatSize(tt.want))
		}
	}
}
