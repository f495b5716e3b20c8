package capture

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WatchGone calls gone, from a goroutine of its own, with the name of
// each interface of hooks that goes away, once, until ctx is done. The
// kernel takes an interface's programs off with it; its counters stay
// readable, so its statistics can still be written.
func WatchGone(ctx context.Context, hooks []Hook, gone func(name string)) error {
	watched := make(map[int]string)
	for _, h := range hooks {
		watched[h.Index] = h.Interface
	}
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{}); err != nil {
		close(done)
		return fmt.Errorf("watch interfaces: %w", err)
	}
	// One that went before the subscription began is gone too.
	var already []int
	for index := range watched {
		if _, err := netlink.LinkByIndex(index); err != nil {
			already = append(already, index)
		}
	}
	go func() {
		defer close(done)
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
			case <-ctx.Done():
				return
			case u, ok := <-updates:
				if !ok {
					return
				}
				if u.Header.Type == unix.RTM_DELLINK {
					report(int(u.Index))
				}
			}
		}
	}()
	return nil
}
