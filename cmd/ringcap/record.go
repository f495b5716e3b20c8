package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/capture"
	"github.com/ringcap/ringcap/writer"
)

func recordCommand() *cli.Command {
	return &cli.Command{
		Name:      "record",
		Usage:     "capture selected frames from interfaces into a pcapng file",
		UsageText: "ringcap record -i IFACE [-i IFACE ...] -w FILE [options]",
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{fmt.Errorf("record: %w (see ringcap record --help)", err)}
		},
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "interface", Aliases: []string{"i"}, Usage: "interface to capture on; repeat for more"},
			&cli.StringFlag{Name: "write", Aliases: []string{"w"}, Usage: "pcapng file to write, - for standard output"},
			&cli.UintFlag{Name: "snaplen", Aliases: []string{"s"}, Value: 256, Usage: "bytes of each frame to keep, 1-65535"},
			&cli.UintFlag{Name: "mtu", Value: 1500, Usage: "capture frames whose L3 length (after Ethernet and VLAN tags) exceeds `BYTES`"},
			&cli.BoolFlag{Name: "all", Usage: "capture every frame, whatever its length"},
			&cli.StringFlag{Name: "ring-size", Value: "8MiB", Usage: "ring buffer size: a power of two, a multiple of the page size (KiB, MiB, GiB)"},
			&cli.Uint64Flag{Name: "count", Aliases: []string{"c"}, Usage: "stop after writing `N` frames"},
			&cli.DurationFlag{Name: "duration", Usage: "stop after `D` (e.g. 30s, 10m)"},
			&cli.StringFlag{Name: "mode", Value: "auto", Usage: "XDP mode: auto (native where the driver supports it), native or generic"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no live status line"},
			&cli.BoolFlag{Name: "force", Usage: "overwrite output files that exist"},
			&cli.StringFlag{Name: "rotate-size", Aliases: []string{"C"}, Usage: "start a new file once the current one holds `SIZE` (bytes, KiB, MiB, GiB)"},
			&cli.DurationFlag{Name: "rotate-every", Aliases: []string{"G"}, Usage: "start a new file every `DURATION`"},
			&cli.BoolFlag{Name: "align", Usage: "with --rotate-every, start files on multiples of the duration in wall-clock time"},
			&cli.Uint64Flag{Name: "rotate-packets", Usage: "start a new file once the current one holds `N` packets"},
			&cli.IntFlag{Name: "max-files", Aliases: []string{"W"}, Usage: "keep at most `N` files, deleting the oldest this capture wrote"},
			&cli.StringFlag{Name: "post-rotate", Aliases: []string{"z"}, Usage: "run `CMD` with each finished file's path as its argument"},
			&cli.StringFlag{Name: "file-mode", Value: "0600", Usage: "permissions of new files, in octal"},
		},
		Action: func(c *cli.Context) error {
			opts, err := parseRecordFlags(c)
			if err != nil {
				return err
			}
			return record(c.Context, opts, c.App.ErrWriter)
		},
	}
}

type recordOptions struct {
	capture    capture.Config
	output     writer.Config
	count      uint64
	duration   time.Duration
	quiet      bool
	postRotate string
}

func parseRecordFlags(c *cli.Context) (recordOptions, error) {
	if c.NArg() > 0 {
		return recordOptions{}, usagef("record: unexpected argument %q (flags go before arguments; see ringcap record --help)", c.Args().First())
	}
	opts := recordOptions{
		capture: capture.Config{
			Interfaces: c.StringSlice("interface"),
			CaptureAll: c.Bool("all"),
		},
		output: writer.Config{
			Path:      c.String("write"),
			Overwrite: c.Bool("force"),
			Policy: writer.Policy{
				Every:    c.Duration("rotate-every"),
				Align:    c.Bool("align"),
				Packets:  c.Uint64("rotate-packets"),
				MaxFiles: c.Int("max-files"),
			},
		},
		count:      c.Uint64("count"),
		duration:   c.Duration("duration"),
		quiet:      c.Bool("quiet"),
		postRotate: c.String("post-rotate"),
	}
	if len(opts.capture.Interfaces) == 0 {
		return opts, usagef("record: no interface: give one with -i IFACE")
	}
	if opts.output.Path == "" {
		return opts, usagef("record: no output file: give one with -w FILE (- for standard output)")
	}
	snaplen := c.Uint("snaplen")
	if snaplen < 1 || snaplen > bpf.MaxSnapLen {
		return opts, usagef("record: snaplen %d is out of range 1-%d (65535 keeps a whole 9000-byte jumbo frame)", snaplen, bpf.MaxSnapLen)
	}
	opts.capture.SnapLen = uint32(snaplen)
	mtu := c.Uint("mtu")
	if mtu > math.MaxUint16 {
		return opts, usagef("record: mtu %d is out of range 0-%d", mtu, math.MaxUint16)
	}
	opts.capture.MTU = uint32(mtu)
	ring, err := parseSize(c.String("ring-size"))
	if err != nil {
		return opts, usageError{fmt.Errorf("record: %w", err)}
	}
	if err := bpf.ValidateRingSize(ring); err != nil {
		return opts, usageError{fmt.Errorf("record: %w", err)}
	}
	opts.capture.RingSize = uint32(ring)
	// The ring must hold at least one record of this snaplen.
	if err := (bpf.Config{SnapLen: opts.capture.SnapLen, RingSize: opts.capture.RingSize, Interfaces: 1}).Validate(); err != nil {
		return opts, usageError{fmt.Errorf("record: %w", err)}
	}
	if opts.capture.Mode, err = capture.ParseMode(c.String("mode")); err != nil {
		return opts, usageError{fmt.Errorf("record: %w", err)}
	}
	if opts.duration < 0 {
		return opts, usagef("record: duration %v is negative", opts.duration)
	}
	if err := parseOutputFlags(c, &opts.output); err != nil {
		return opts, err
	}
	return opts, nil
}

func parseOutputFlags(c *cli.Context, out *writer.Config) error {
	if s := c.String("rotate-size"); s != "" {
		size, err := parseSize(s)
		if err != nil || size == 0 {
			return usagef("record: --rotate-size %q: give a size such as 100MiB", s)
		}
		out.Size = int64(size)
	}
	switch p := out.Policy; {
	case p.Every < 0:
		return usagef("record: --rotate-every %v is negative", p.Every)
	case p.Align && p.Every == 0:
		return usagef("record: --align needs --rotate-every")
	case p.MaxFiles < 0:
		return usagef("record: --max-files %d is negative", p.MaxFiles)
	}
	mode, err := strconv.ParseUint(c.String("file-mode"), 8, 32)
	if err != nil || mode > 0o777 || mode&0o600 != 0o600 {
		return usagef("record: --file-mode %q: give octal permissions that let ringcap read and write, e.g. 0600 or 0640", c.String("file-mode"))
	}
	out.FileMode = os.FileMode(mode)
	if c.String("post-rotate") != "" && out.Path == "-" {
		return usagef("record: --post-rotate needs files, not standard output")
	}
	if err := out.Check(); err != nil {
		var exists *writer.ExistError
		if errors.As(err, &exists) {
			return err
		}
		return usageError{fmt.Errorf("record: %w", err)}
	}
	return nil
}

// record runs one capture until a signal, the count or the duration ends
// it, then writes out every frame left in the ring and prints a summary.
func record(ctx context.Context, opts recordOptions, stderr io.Writer) error {
	capt, err := capture.Open(opts.capture)
	if err != nil {
		return err
	}
	defer capt.Close()

	post := newPostRotate(opts.postRotate, stderr)
	defer post.wait()
	out := opts.output
	out.Options = writer.Options{
		Application: "ringcap " + version,
		Interfaces:  fileInterfaces(capt.Interfaces(), opts.capture),
	}
	out.Counters = func() ([]writer.Counts, error) { return fileCounts(capt) }
	out.Finished = post.run
	files, err := writer.Create(out)
	if err != nil {
		return err
	}

	ctx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	// A second Ctrl-C kills ringcap the usual way, should draining hang.
	context.AfterFunc(ctx, stopSignals)
	if opts.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.duration)
		defer cancel()
	}

	for _, ifc := range capt.Interfaces() {
		fmt.Fprintf(stderr, "ringcap: capturing on %s (XDP %s mode): %s, snaplen %d, to %s\n",
			ifc.Name, ifc.Mode, opts.capture.Filter(), opts.capture.SnapLen, outputName(files.Current()))
	}
	status := startStatus(stderr, opts.quiet, capt, files)
	runErr := capt.Run(ctx, files, opts.count)
	status.stop()

	// Closing writes the statistics and flushes; after a failed write it
	// keeps what reached the file whole.
	closeErr := files.Close()
	if runErr != nil {
		closeErr = nil // the same failure, or one that follows from it
	}
	if errors.Is(runErr, syscall.ENOSPC) {
		runErr = fmt.Errorf("%w: the disk is full; every file written so far is complete (--max-files bounds the space a capture takes)", runErr)
	}
	counts, cntErr := capt.Counters()
	if cntErr == nil {
		printSummary(stderr, capt, counts, files)
	}
	return errors.Join(runErr, closeErr, cntErr)
}

func fileCounts(capt *capture.Capture) ([]writer.Counts, error) {
	counts, err := capt.Counters()
	if err != nil {
		return nil, err
	}
	out := make([]writer.Counts, len(counts))
	for i, c := range counts {
		out[i] = writer.Counts{Received: c.Seen, Dropped: c.Dropped()}
	}
	return out, nil
}

func fileInterfaces(ifaces []capture.Interface, cfg capture.Config) []writer.Interface {
	out := make([]writer.Interface, len(ifaces))
	for i, ifc := range ifaces {
		out[i] = writer.Interface{
			Name:        ifc.Name,
			Description: fmt.Sprintf("XDP %s mode", ifc.Mode),
			Filter:      cfg.Filter(),
			SnapLen:     cfg.SnapLen,
		}
	}
	return out
}

func outputName(path string) string {
	if path == "-" {
		return "standard output"
	}
	return path
}

func printSummary(stderr io.Writer, capt *capture.Capture, counts []bpf.Counters, files *writer.Files) {
	where := outputName(files.Current())
	if n := files.Count(); n > 1 {
		where = fmt.Sprintf("%d files, the last %s", n, where)
	}
	fmt.Fprintf(stderr, "ringcap: %d frames written to %s (%s)\n", files.Saved(), where, formatBytes(uint64(files.Bytes())))
	if lost := capt.Packets() - files.Saved(); lost > 0 {
		fmt.Fprintf(stderr, "ringcap: %d frames taken from the ring were lost with the write that failed\n", lost)
	}
	var total bpf.Counters
	for i, c := range counts {
		total = total.Add(c)
		if len(counts) > 1 {
			fmt.Fprintf(stderr, "ringcap: %s: %s\n", capt.Interfaces()[i].Name, formatCounters(c))
		}
	}
	fmt.Fprintf(stderr, "ringcap: %s\n", formatCounters(total))
}

func formatCounters(c bpf.Counters) string {
	return fmt.Sprintf("%d seen, %d selected, %d written to the ring, %d dropped because the ring was full, %d reserve failures",
		c.Seen, c.Selected, c.Written, c.RingFull, c.ReserveFailed)
}
