package main

import (
	"fmt"
	"io"
	"sync"

	"github.com/ringcap/ringcap/capture"
	"github.com/ringcap/ringcap/writer"
)

// captureSink is what a capture writes to: the files, which take the
// hooks of interfaces that appear as interfaces of their own, and stderr,
// which tells of interfaces coming and going.
type captureSink struct {
	*writer.Files
	describe func(capture.Hook) writer.Interface
	// firstLine prints the line that starts the capture on an interface.
	firstLine func(ifc string, hooks []capture.Hook)
	stderr    io.Writer
	mu        sync.Mutex // stderr's lines
}

func (s *captureSink) AddHook(h capture.Hook) error { return s.Files.AddInterface(s.describe(h)) }

func (s *captureSink) InterfaceAdded(name string, hooks []capture.Hook) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.firstLine(name, hooks)
}

func (s *captureSink) InterfaceLeftOut(err error) {
	s.line("ringcap: %v: left out, the capture goes on with the other interfaces", withFlagFixes(err))
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
