package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/ringcap/ringcap/bpf/frames"
)

// manyInterfaces writes a pcapng file of n Ethernet interfaces, if0 to
// if<n-1>, with an oversize frame on each of the first withFrames and on
// the last: the files the replay's program count is tried on, too large to
// keep in the corpus (`gen interfaces N WITH_FRAMES PATH`).
func manyInterfaces(args []string) {
	if len(args) != 3 {
		fail(fmt.Errorf("usage: gen interfaces N WITH_FRAMES PATH"))
	}
	n, err1 := strconv.Atoi(args[0])
	withFrames, err2 := strconv.Atoi(args[1])
	if err1 != nil || err2 != nil || n < 1 || withFrames < 0 {
		fail(fmt.Errorf("interfaces %s %s: give counts", args[0], args[1]))
	}
	ifaces := make([]iface, n)
	for i := range ifaces {
		ifaces[i] = eth("if" + strconv.Itoa(i))[0]
	}
	var fs []frame
	for i := range min(withFrames, n) {
		fs = append(fs, f(i, frames.Spec{L3Len: 2000}))
	}
	if withFrames < n {
		fs = append(fs, f(n-1, frames.Spec{L3Len: 2000}))
	}
	if err := os.WriteFile(args[2], pcapng(fs, ifaces), 0o644); err != nil {
		fail(err)
	}
}
