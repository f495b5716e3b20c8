package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/ringcap/ringcap/capture"
	"github.com/ringcap/ringcap/capture/packet"
	"github.com/ringcap/ringcap/writer"
)

// captureSink is what a capture writes to: the files, which take the
// hooks of interfaces that appear as interfaces of their own, and stderr,
// which tells of interfaces coming and going. The files are a field, not
// embedded, so that the capture sees only what a sink does.
type captureSink struct {
	files  *writer.Files
	capt   *capture.Capture
	cfg    capture.Config // what the lines say of the selection
	netns  string         // as --netns named it
	stderr io.Writer
	mu     sync.Mutex // stderr's lines
}

// The capture finds what else a sink does by asserting these: one left
// out would be left out quietly (without Idle, files no longer rotate
// by the clock while the ring is empty).
var (
	_ capture.IdleSink = (*captureSink)(nil)
	_ capture.HookSink = (*captureSink)(nil)
	_ capture.LinkSink = (*captureSink)(nil)
)

func (s *captureSink) WritePacket(p packet.Packet) error { return s.files.WritePacket(p) }
func (s *captureSink) Flush() error                      { return s.files.Flush() }
func (s *captureSink) Idle() error                       { return s.files.Idle() }

// fileInterface is the file's interface for a hook: each direction of an
// interface has its own counters, and so its own statistics in the file.
func fileInterface(h capture.Hook, cfg capture.Config, netns string) writer.Interface {
	return writer.Interface{
		Name: h.Interface,
		// Wireshark names an interface by its description where
		// there is one: it starts with the name.
		Description: h.Interface + netnsSuffix(netns) + ": " + h.Describe(noteText),
		Filter:      cfg.Selection(),
		SnapLen:     cfg.SnapLen,
		// Only XDP knows the receive queue.
		Queues: h.XDP,
		OS:     hostOS(),
	}
}

// announce says which interfaces were left out at the start, then starts
// the capture on each of the others with its first line.
func (s *captureSink) announce() {
	for _, err := range s.capt.Skipped() {
		s.InterfaceLeftOut(err)
	}
	hooks := s.capt.Hooks()
	var names []string
	for _, h := range hooks {
		if !slices.Contains(names, h.Interface) {
			names = append(names, h.Interface)
		}
	}
	for _, name := range names {
		s.InterfaceAdded(name, hooks)
	}
}

func (s *captureSink) AddHook(h capture.Hook) error {
	return s.files.AddInterface(fileInterface(h, s.cfg, s.netns))
}

// InterfaceAdded prints the line that starts the capture on interface
// name, at those of hooks that are its.
func (s *captureSink) InterfaceAdded(name string, hooks []capture.Hook) {
	var where []string
	for _, h := range hooks {
		if h.Interface == name {
			where = append(where, h.Describe(noteText))
		}
	}
	s.line("ringcap: capturing on %s%s (%s): %s, snaplen %d, %s, to %s (%s)",
		name, netnsSuffix(s.netns), strings.Join(where, "; "), selectionText(s.cfg), s.cfg.SnapLen,
		ringsText(s.capt), outputName(s.files.Current()), s.files.IOMode())
}

func (s *captureSink) InterfaceLeftOut(err error) {
	s.line("ringcap: %v: left out, the capture goes on with the other interfaces", withFlags(err))
}

func (s *captureSink) InterfaceGone(name string, removeErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.stderr, "ringcap: interface %s went away: its frames so far are written, its statistics at the end\n", name)
	if removeErr != nil {
		fmt.Fprintf(s.stderr, "ringcap: interface %s: %v\n", name, removeErr)
	}
}

func (s *captureSink) WatchFailed(err error) {
	s.line("ringcap: %v: an interface that goes away will not be noticed", err)
}

func (s *captureSink) WatchLost(err error) {
	s.line("ringcap: interfaces are no longer watched (%v): one that goes away will not be noticed", err)
}

func (s *captureSink) line(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.stderr, format+"\n", args...)
}
