// Package cpustat reads CPU time for measurements that must count work
// done outside the process being measured: an XDP program runs in the
// softirq of whichever process or CPU receives the frame, AF_PACKET's copy
// too, and the page cache is written back by kernel threads.
package cpustat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Machine is the CPU time all CPUs have spent busy since boot, from
// /proc/stat: everything but idle and iowait. Its resolution is 10 ms.
func Machine() (time.Duration, error) {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	fields := strings.Fields(string(line)) // cpu user nice system idle iowait irq softirq steal ...
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat starts %q", line)
	}
	var ticks uint64
	for i, f := range fields[1:9] {
		if i == 3 || i == 4 {
			continue // idle, iowait
		}
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		ticks += n
	}
	// USER_HZ is 100 on Linux, whatever the kernel's HZ.
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// Process is the CPU time this process has used, user and system.
func Process() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
