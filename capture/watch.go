package capture

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WatchGone calls gone, from a goroutine of its own, with the name of
// each interface of hooks that goes away, once, until stop is called;
// stop waits for the goroutine. The kernel takes an interface's programs
// off with it; its counters stay readable, so its statistics can still be
// written. lost is called once if the kernel's notifications stop
// coming.
func WatchGone(hooks []Hook, gone func(name string), lost func(error)) (stop func(), err error) {
	watched := make(map[int]string)
	for _, h := range hooks {
		watched[h.Index] = h.Interface
	}
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	opts := netlink.LinkSubscribeOptions{ErrorCallback: lost}
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
	go func() {
		defer close(finished)
		report := func(index int) {
			if name, ok := watched[index]; ok {
				delete(watched, index)
				gone(name)
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
				if u.Header.Type != unix.RTM_DELLINK || u.IfInfomsg.Family != unix.AF_UNSPEC {
					continue
				}
				if _, err := netlink.LinkByIndex(int(u.Index)); errors.As(err, new(netlink.LinkNotFoundError)) {
					report(int(u.Index))
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
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
