package main

import (
	"fmt"
	"strconv"
	"strings"
)

// parseSize reads a byte count with an optional binary unit: 4096, 64KiB,
// 8MiB, 1GiB (K, M and G mean the same).
func parseSize(s string) (uint64, error) {
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.ToLower(strings.TrimSpace(s[len(num):]))
	shift, ok := map[string]uint{"": 0, "b": 0, "k": 10, "kib": 10, "m": 20, "mib": 20, "g": 30, "gib": 30}[unit]
	n, err := strconv.ParseUint(num, 10, 64)
	if !ok || err != nil || n > (1<<(64-shift))-1 {
		return 0, fmt.Errorf("invalid size %q: give bytes, or a number with KiB, MiB or GiB, e.g. 8MiB", s)
	}
	return n << shift, nil
}

// formatBytes prints a byte count for people: 1.5 MiB.
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 3; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGT"[exp])
}
