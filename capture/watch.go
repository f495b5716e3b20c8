package capture

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WatchLinks calls gone, from a goroutine of its own, with the index and
// name of each interface of hooks that goes away (or moves to another
// namespace), once, until stop is called; stop waits for the goroutine.
// Capture.RemoveInterface then takes the program off it; its counters
// stay readable, so its statistics can still be written. If appeared is not nil, it is called with each interface that
// appears, and says whether to watch it too. lost is called once if the
// kernel's notifications stop coming.
func WatchLinks(hooks []Hook, gone func(index int, name string), appeared func(name string) bool, lost func(error)) (stop func(), err error) {
	watched := make(map[int]string)
	for _, h := range hooks {
		watched[h.Index] = h.Interface
	}
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	// Closing the subscription makes its reader fail: no news then.
	var stopping atomic.Bool
	opts := netlink.LinkSubscribeOptions{ErrorCallback: func(err error) {
		if lost != nil && !stopping.Load() {
			lost(err)
		}
	}}
	if err := netlink.LinkSubscribeWithOptions(updates, done, opts); err != nil {
		return nil, fmt.Errorf("watch interfaces: %w", err)
	}
	// One that went before the subscription began is gone too.
	var already []int
	for index := range watched {
		if _, err := netlink.LinkByIndex(index); errors.As(err, new(netlink.LinkNotFoundError)) {
			already = append(already, index)
		}
	}
	finished := make(chan struct{})
	// Interfaces not watched that are there now, or appeared and were
	// left out: their changes are no news.
	ignored := make(map[int]bool)
	if appeared != nil {
		links, err := netlink.LinkList()
		if err != nil {
			close(done)
			return nil, fmt.Errorf("watch interfaces: %w", err)
		}
		for _, l := range links {
			if _, ok := watched[l.Attrs().Index]; !ok {
				ignored[l.Attrs().Index] = true
			}
		}
	}
	go func() {
		defer close(finished)
		report := func(index int) {
			if name, ok := watched[index]; ok {
				delete(watched, index)
				gone(index, name)
			}
		}
		for _, index := range already {
			report(index)
		}
		for {
			select {
			case <-done:
				return
			case u, ok := <-updates:
				if !ok {
					return
				}
				// A bridge port leaving its bridge is an
				// RTM_DELLINK too, of family AF_BRIDGE; the
				// interface stays.
				if u.IfInfomsg.Family != unix.AF_UNSPEC {
					continue
				}
				index := int(u.Index)
				if u.Header.Type == unix.RTM_NEWLINK && appeared != nil && u.Link != nil {
					if _, ok := watched[index]; !ok && !ignored[index] {
						name := u.Link.Attrs().Name
						if appeared(name) {
							watched[index] = name
						} else {
							ignored[index] = true
						}
					}
					continue
				}
				if u.Header.Type != unix.RTM_DELLINK {
					continue
				}
				delete(ignored, index)
				if _, err := netlink.LinkByIndex(int(u.Index)); errors.As(err, new(netlink.LinkNotFoundError)) {
					report(int(u.Index))
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			stopping.Store(true)
			close(done)
			<-finished
			// The library's reader may wait to hand over one more.
			go func() {
				for range updates {
				}
			}()
		})
	}, nil
}
