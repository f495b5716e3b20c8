package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/capture"
	"github.com/ringcap/ringcap/writer"
)

// status keeps a one-line summary on a terminal, rewritten once a second.
type status struct {
	done chan struct{}
	wg   sync.WaitGroup
}

// startStatus starts the status line when stderr is a terminal and quiet
// is not set; otherwise its stop does nothing.
func startStatus(stderr io.Writer, quiet bool, capt *capture.Capture, files *writer.Files) *status {
	s := &status{done: make(chan struct{})}
	if quiet || !isTerminal(stderr) {
		return s
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		last, lastTime := uint64(0), time.Now()
		for {
			select {
			case <-s.done:
				fmt.Fprint(stderr, "\r\033[K")
				return
			case now := <-tick.C:
				n := capt.Packets()
				var dropped uint64
				if counts, err := capt.Counters(); err == nil {
					for _, c := range counts {
						dropped += c.Dropped()
					}
				}
				rate := float64(n-last) / now.Sub(lastTime).Seconds()
				last, lastTime = n, now
				fmt.Fprintf(stderr, "\r\033[K%d captured, %d dropped, %.0f/s, %s to %s",
					n, dropped, rate, formatBytes(uint64(files.Bytes())), outputName(files.Current()))
			}
		}
	}()
	return s
}

func (s *status) stop() {
	close(s.done)
	s.wg.Wait()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
