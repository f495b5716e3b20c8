package capture

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNoInterface is Run's error when every interface of a capture that
// follows its interfaces (Config.FollowLinks) went away.
var ErrNoInterface = errors.New("no interface left to capture on")

// LinkSink is a Sink told of the interfaces that come and go while a
// capture that follows them (Config.FollowLinks) runs. Its methods are
// called from goroutines other than Run's; WatchLost may come at the same
// time as another.
type LinkSink interface {
	Sink
	// InterfaceAdded: the capture runs on an interface that appeared
	// (AnyInterface), at hooks; the sink hears of each hook again, as
	// a HookSink, on Run's goroutine before its first frame (HookSink
	// says why twice).
	InterfaceAdded(name string, hooks []Hook)
	// InterfaceLeftOut: an interface that appeared is not captured on,
	// or not in every direction, for err.
	InterfaceLeftOut(err error)
	// InterfaceGone: an interface went away or moved to another network
	// namespace; its frames so far were handed over, and its counters
	// stay readable. removeErr is taking the program off it.
	InterfaceGone(name string, removeErr error)
	// WatchFailed: the interfaces cannot be watched at all; WatchLost:
	// the kernel's notifications stopped coming. Either way, an
	// interface that goes away is not noticed.
	WatchFailed(err error)
	WatchLost(err error)
}

// linkWatcher follows the interfaces of a running capture through the
// kernel's link notifications: it takes the program off one that goes
// away, since in another namespace the shared program instances would
// count its frames as those of whatever interface has its index there,
// and with AnyInterface it attaches the program to one that appears.
type linkWatcher struct {
	capt *Capture
	sink LinkSink
	// followNew says interfaces that appear are captured on too.
	followNew bool
	// present are the interfaces there at Open, by index, with
	// followNew: any other is one that appeared since.
	present  map[int]bool
	noneLeft func()
	// watched are the interfaces captured on, by index; ignored are
	// those that were there at Open, or were left out: their changes
	// are no news.
	watched map[int]string
	ignored map[int]bool

	updates  chan netlink.LinkUpdate
	done     chan struct{} // closing it ends the subscription
	finished chan struct{} // closed when the watcher's goroutine returns
	// stopping: closing the subscription makes its reader fail, which
	// is no news.
	stopping atomic.Bool
}

// watchLinks follows the interfaces of the capture's hooks until stop is
// called, telling sink if it is a LinkSink; noneLeft is called once no
// interface is left.
func (c *Capture) watchLinks(sink Sink, noneLeft func()) (stop func()) {
	w := &linkWatcher{
		capt:      c,
		sink:      noLinkSink{sink},
		followNew: slices.Contains(c.cfg.Interfaces, AnyInterface),
		present:   c.present,
		noneLeft:  noneLeft,
		watched:   make(map[int]string),
		ignored:   make(map[int]bool),
		updates:   make(chan netlink.LinkUpdate, 64),
		done:      make(chan struct{}),
		finished:  make(chan struct{}),
	}
	if s, ok := sink.(LinkSink); ok {
		w.sink = s
	}
	for _, h := range c.hooks.attached() {
		w.watched[h.Index] = h.Interface
	}
	early, err := w.subscribe()
	if err != nil {
		w.sink.WatchFailed(err)
		return func() {}
	}
	go w.run(early)
	return w.stop
}

// earlyNews is what changed between Open and the notifications' start.
type earlyNews struct {
	gone     []int          // watched interfaces that went
	appeared map[int]string // interfaces that came, by index
}

// subscribe starts the kernel's notifications, and returns what they
// would have said had they begun at Open.
func (w *linkWatcher) subscribe() (early earlyNews, err error) {
	opts := netlink.LinkSubscribeOptions{ErrorCallback: func(err error) {
		if !w.stopping.Load() {
			w.sink.WatchLost(err)
		}
	}}
	if err := netlink.LinkSubscribeWithOptions(w.updates, w.done, opts); err != nil {
		return early, fmt.Errorf("watch interfaces: %w", err)
	}
	for index := range w.watched {
		if linkGone(index) {
			early.gone = append(early.gone, index)
		}
	}
	if !w.followNew {
		return early, nil
	}
	links, err := netlink.LinkList()
	if err != nil {
		w.stopping.Store(true)
		close(w.done)
		return early, fmt.Errorf("watch interfaces: %w", err)
	}
	early.appeared = make(map[int]string)
	for _, l := range links {
		index := l.Attrs().Index
		if _, ok := w.watched[index]; ok {
			continue
		}
		if w.present[index] {
			w.ignored[index] = true
		} else {
			early.appeared[index] = l.Attrs().Name
		}
	}
	return early, nil
}

// linkGone says the kernel knows no interface of index, as opposed to
// failing to say.
func linkGone(index int) bool {
	_, err := netlink.LinkByIndex(index)
	return errors.As(err, new(netlink.LinkNotFoundError))
}

func (w *linkWatcher) run(early earlyNews) {
	defer close(w.finished)
	for _, index := range early.gone {
		w.remove(index)
	}
	for index, name := range early.appeared {
		w.appeared(index, name)
	}
	for {
		select {
		case <-w.done:
			return
		case u, ok := <-w.updates:
			if !ok {
				return
			}
			w.update(u)
		}
	}
}

func (w *linkWatcher) update(u netlink.LinkUpdate) {
	// A bridge port leaving its bridge is an RTM_DELLINK too, of family
	// AF_BRIDGE; the interface stays.
	if u.IfInfomsg.Family != unix.AF_UNSPEC {
		return
	}
	index := int(u.Index)
	switch {
	case u.Header.Type == unix.RTM_NEWLINK && w.followNew && u.Link != nil:
		if _, ok := w.watched[index]; !ok && !w.ignored[index] {
			w.appeared(index, u.Link.Attrs().Name)
		}
	case u.Header.Type == unix.RTM_DELLINK:
		delete(w.ignored, index)
		if linkGone(index) {
			w.remove(index)
		}
	}
}

// appeared captures on an interface that appeared, or leaves it out.
func (w *linkWatcher) appeared(index int, name string) {
	added, err := w.capt.addInterface(name)
	if err != nil && !errors.Is(err, errEnded) {
		w.sink.InterfaceLeftOut(err)
	}
	if len(added) == 0 {
		w.ignored[index] = true
		return
	}
	w.watched[index] = name
	w.sink.InterfaceAdded(name, added)
}

// remove takes the program off a watched interface that went away.
func (w *linkWatcher) remove(index int) {
	name, ok := w.watched[index]
	if !ok {
		return
	}
	delete(w.watched, index)
	w.sink.InterfaceGone(name, w.capt.removeInterface(index))
	if len(w.watched) == 0 {
		w.noneLeft()
	}
}

// stop ends the subscription and waits for the watcher's goroutine.
func (w *linkWatcher) stop() {
	w.stopping.Store(true)
	close(w.done)
	<-w.finished
	// The library's reader may wait to hand over one more.
	go func() {
		for range w.updates {
		}
	}()
}

// noLinkSink is a sink that is told nothing of the interfaces.
type noLinkSink struct{ Sink }

func (noLinkSink) InterfaceAdded(string, []Hook) {}
func (noLinkSink) InterfaceLeftOut(error)        {}
func (noLinkSink) InterfaceGone(string, error)   {}
func (noLinkSink) WatchFailed(error)             {}
func (noLinkSink) WatchLost(error)               {}
