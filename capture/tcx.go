package capture

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf"
)

// NoTCXError is a kernel without tcx links (Linux 6.6), which the tc
// hooks need: outbound frames always, inbound ones where XDP is not
// had (Hook.Behind names another XDP program that holds the interface).
type NoTCXError struct {
	Hook Hook
	Err  error
}

func (e *NoTCXError) Error() string {
	return fmt.Sprintf("attach %s %s: this kernel has no tcx links, which ringcap's tc hooks need",
		e.Hook.Interface, e.Hook.Attachment())
}

func (e *NoTCXError) Unwrap() error { return e.Err }

// attachTCX attaches the tc build for h through a tcx link, which the
// kernel removes with the process, as it does the XDP link.
//
// ringcap sees what tcpdump sees: tcpdump's socket gets received frames
// before tc's ingress programs run, and sent ones after tc's egress
// programs, so ringcap goes first at ingress and last at egress. Its
// program returns TCX_NEXT: the frame goes on to the next program, or
// to the stack, as if ringcap were not there.
func attachTCX(objs *bpf.Objects, h *Hook) (link.Link, error) {
	h.XDP = false
	prog, err := objs.Program(bpf.Instance{Build: bpf.TC, Outbound: h.Direction == Outbound})
	if err != nil {
		return nil, err
	}
	opts := link.TCXOptions{Program: prog, Interface: h.Index, Attach: ebpf.AttachTCXIngress, Anchor: link.Head()}
	if h.Direction == Outbound {
		opts.Attach, opts.Anchor = ebpf.AttachTCXEgress, link.Tail()
	}
	l, err := link.AttachTCX(opts)
	if err != nil {
		switch {
		case errors.Is(err, ebpf.ErrNotSupported):
			return nil, &NoTCXError{Hook: *h, Err: err}
		case errors.Is(err, unix.EPERM):
			return nil, fmt.Errorf("attach %s: %w", h.Interface, bpf.ErrPrivileges)
		}
		return nil, fmt.Errorf("attach %s %s: %w", h.Interface, h.Attachment(), err)
	}
	return l, nil
}
