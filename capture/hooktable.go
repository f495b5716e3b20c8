package capture

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cilium/ebpf/link"

	"github.com/ringcap/ringcap/bpf"
)

// hookTable is where the program is attached: a hook per slot of the
// program's maps, in the order they were taken, and the link that holds
// each. Its methods may be called while Run runs, from the watcher's
// goroutine as well as Run's.
type hookTable struct {
	objs  *bpf.Objects
	slots int // in the program's maps

	mu    sync.Mutex
	hooks []Hook // a ring record's slot is its hook's position
	// links are the hooks' links; nil for one taken off its interface,
	// whose hook keeps its slot.
	links []link.Link
	// detached: no hook is added any more.
	detached bool

	detachOnce sync.Once
	detachErr  error
}

// errEnded is attach's error once detach has begun.
var errEnded = errors.New("the capture is ending")

// attach takes the next slot for h and attaches the program there with
// attachAt, which fills in how h is attached; it returns h as attached.
// The slot is the interface's before the program is: the shared
// instances pass on the frames of an interface without a slot unseen.
func (t *hookTable) attach(h Hook, attachAt func(*Hook) (link.Link, error)) (Hook, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	slot := len(t.hooks)
	if t.detached {
		return h, errEnded
	}
	if slot >= t.slots {
		return h, fmt.Errorf("attach %s: all %d hooks of the capture are taken", h.Interface, t.slots)
	}
	for i, o := range t.hooks {
		// Its slot would take this one's place in the program's table.
		if o.Index == h.Index && o.Direction == h.Direction && t.links[i] != nil {
			return h, fmt.Errorf("attach %s %s: captured already, as %s", h.Interface, h.Direction, o.Interface)
		}
	}
	outbound := h.Direction == Outbound
	if err := t.objs.SetSlot(h.Index, outbound, slot); err != nil {
		return h, fmt.Errorf("attach %s: %w", h.Interface, err)
	}
	l, err := attachAt(&h)
	if err != nil {
		return h, errors.Join(err, t.objs.ClearSlot(h.Index, outbound))
	}
	t.links = append(t.links, l)
	t.hooks = append(t.hooks, h)
	return h, nil
}

// remove takes the program off the interface of index. Its hooks keep
// their slots, and their counters stay readable.
func (t *hookTable) remove(index int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for i, h := range t.hooks {
		if h.Index != index || t.links[i] == nil {
			continue
		}
		errs = append(errs, t.links[i].Close(), t.objs.ClearSlot(index, h.Direction == Outbound))
		t.links[i] = nil
		if inst, ok := h.boundInstance(); ok {
			errs = append(errs, t.objs.Release(inst))
		}
	}
	return errors.Join(errs...)
}

// all are the hooks by slot, those taken off their interface too.
func (t *hookTable) all() []Hook {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.hooks)
}

// count is the number of slots taken.
func (t *hookTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.hooks)
}

// attached are the hooks the program is still attached at.
func (t *hookTable) attached() []Hook {
	t.mu.Lock()
	defer t.mu.Unlock()
	var hooks []Hook
	for i, h := range t.hooks {
		if t.links[i] != nil {
			hooks = append(hooks, h)
		}
	}
	return hooks
}

// detach takes the program off every interface, once; no hook is
// attached after it began.
func (t *hookTable) detach() error {
	t.detachOnce.Do(func() {
		var errs []error
		t.mu.Lock()
		defer t.mu.Unlock()
		t.detached = true
		for i, l := range t.links {
			if l == nil {
				continue // removed
			}
			if err := l.Close(); err != nil {
				errs = append(errs, fmt.Errorf("detach %s %s: %w", t.hooks[i].Interface, t.hooks[i].Attachment(), err))
			}
		}
		t.detachErr = errors.Join(errs...)
	})
	return t.detachErr
}
