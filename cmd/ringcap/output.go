package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/capture"
	"github.com/ringcap/ringcap/writer"
)

// source is what frames come from: a live capture or a replay.
type source interface {
	Counters() ([]bpf.Counters, error)
	Packets() uint64 // frames handed to the writer
}

// createFiles opens the output: out completed with the file's header
// contents, statistics from src, the clock, and what follows a finished
// file (--post-rotate, --upload).
func createFiles(out writer.Config, ifaces []writer.Interface, src source, now func() time.Time, finished func(path string) writer.Release) (*writer.Files, error) {
	out.Options = writer.Options{Application: "ringcap " + version, Hardware: hostHardware(), OS: hostOS(), Interfaces: ifaces}
	out.Now = now
	out.Finished = finished
	out.Counters = func() ([]writer.Counts, error) {
		counts, err := src.Counters()
		if err != nil {
			return nil, err
		}
		files := make([]writer.Counts, len(counts))
		for i, c := range counts {
			files[i] = writer.Counts{Received: c.Seen, Dropped: c.Dropped()}
		}
		return files, nil
	}
	files, err := writer.Create(out)
	return files, withFlags(err)
}

// signalContext ends on Ctrl-C or SIGTERM; a second Ctrl-C kills ringcap
// the usual way, should stopping hang.
func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	return ctx, stop
}

// closeFiles ends the last file and explains a full disk. runErr is what
// stopped the frames; closing after it adds nothing new.
func closeFiles(files *writer.Files, runErr error) error {
	closeErr := files.Close()
	if runErr != nil && closeErr != nil && errors.Is(closeErr, runErr) {
		closeErr = nil // the same failure, seen again
	}
	err := withFlags(errors.Join(runErr, closeErr))
	if errors.Is(err, syscall.ENOSPC) {
		err = fmt.Errorf("%w: the disk is full; every file written so far is complete (--max-files bounds the space a capture takes)", err)
	}
	return err
}

func outputName(path string) string {
	if path == "-" {
		return "standard output"
	}
	return path
}

// printSummary says where the frames went (files is nil when they were
// printed) and gives the program's counters, per interface when there are
// several, but for those without a name.
func printSummary(stderr io.Writer, src source, names []string, files *writer.Files) error {
	counts, err := src.Counters()
	if err != nil {
		return err
	}
	if files != nil {
		where := outputName(files.Current())
		if n := files.Count(); n > 1 {
			where = fmt.Sprintf("%d files, the last %s", n, where)
		}
		fmt.Fprintf(stderr, "ringcap: %d frames written to %s (%s)\n", files.Saved(), where, formatBytes(uint64(files.Bytes())))
		if handed, saved := src.Packets(), files.Saved(); handed > saved {
			lost := handed - saved
			fmt.Fprintf(stderr, "ringcap: %d frames taken from the ring were lost with the write that failed\n", lost)
		}
	}
	var total bpf.Counters
	for i, c := range counts {
		total = total.Add(c)
		if len(counts) > 1 && names[i] != "" {
			fmt.Fprintf(stderr, "ringcap: %s: %s\n", names[i], formatCounters(c))
		}
	}
	fmt.Fprintf(stderr, "ringcap: %s\n", formatCounters(total))
	return nil
}

func formatCounters(c bpf.Counters) string {
	return fmt.Sprintf("%d seen, %d selected, %d written to the ring, %d dropped because the ring was full, %d reserve failures",
		c.Seen, c.Selected, c.Written, c.RingFull, c.ReserveFailed)
}

// selectionText says in words which frames are selected.
func selectionText(cfg capture.Config) string {
	if s := cfg.Selection(); s != "" {
		return s
	}
	return "all frames"
}
