package main

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/ringcap/ringcap/capture"
)

// watchInterfaces follows the interfaces of a running capture: one that
// goes away is a line on stderr, and allGone is called when none of the
// interfaces are left; with any (-i any), one that appears is captured on
// too, and its first line printed with firstLine. stop ends the watch.
func watchInterfaces(capt *capture.Capture, hooks []capture.Hook, any bool, interfaces int, stderr io.Writer,
	firstLine func(ifc string, hooks []capture.Hook), allGone func()) (stop func()) {
	var mu sync.Mutex // stderr's lines, and left
	left := interfaces
	var appeared func(name string) bool
	if any {
		appeared = func(name string) bool {
			added, err := capt.AddInterface(name)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && !errors.Is(err, capture.ErrEnded) {
				fmt.Fprintf(stderr, "ringcap: %v: left out, the capture goes on with the other interfaces\n", err)
			}
			if len(added) == 0 {
				return false
			}
			firstLine(name, added)
			left++
			return true
		}
	}
	gone := func(index int, name string) {
		// One moved to another namespace keeps a program that would
		// count its frames there as another interface's.
		removeErr := capt.RemoveInterface(index)
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stderr, "ringcap: interface %s went away: its frames so far are written, its statistics at the end\n", name)
		if removeErr != nil {
			fmt.Fprintf(stderr, "ringcap: interface %s: %v\n", name, removeErr)
		}
		if left--; left == 0 {
			allGone()
		}
	}
	lost := func(err error) {
		fmt.Fprintf(stderr, "ringcap: interfaces are no longer watched (%v): one that goes away will not be noticed\n", err)
	}
	stop, err := capture.WatchLinks(hooks, gone, appeared, lost)
	if err != nil {
		fmt.Fprintf(stderr, "ringcap: %v: an interface that goes away will not be noticed\n", err)
		return func() {}
	}
	return stop
}
