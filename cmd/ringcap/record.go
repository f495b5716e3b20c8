package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
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
			&cli.BoolFlag{Name: "force", Usage: "overwrite the output file if it exists"},
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
	capture  capture.Config
	output   string
	count    uint64
	duration time.Duration
	quiet    bool
	force    bool
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
		output:   c.String("write"),
		count:    c.Uint64("count"),
		duration: c.Duration("duration"),
		quiet:    c.Bool("quiet"),
		force:    c.Bool("force"),
	}
	if len(opts.capture.Interfaces) == 0 {
		return opts, usagef("record: no interface: give one with -i IFACE")
	}
	if opts.output == "" {
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
	return opts, nil
}

// record runs one capture until a signal, the count or the duration ends
// it, then writes out every frame left in the ring and prints a summary.
func record(ctx context.Context, opts recordOptions, stderr io.Writer) error {
	if err := writer.CheckNew(opts.output, opts.force); err != nil {
		return err
	}
	capt, err := capture.Open(opts.capture)
	if err != nil {
		return err
	}
	defer capt.Close()

	out, err := writer.Create(opts.output, opts.force)
	if err != nil {
		return err
	}
	w, err := writer.New(out, writer.Options{
		Application: "ringcap " + version,
		Interfaces:  fileInterfaces(capt.Interfaces(), opts.capture),
	})
	if err != nil {
		out.Close()
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
			ifc.Name, ifc.Mode, opts.capture.Filter(), opts.capture.SnapLen, outputName(opts.output))
	}
	status := startStatus(stderr, opts.quiet, capt, w, opts.output)
	runErr := capt.Run(ctx, w, opts.count)
	status.stop()

	// Run flushes when it ends well; when it fails, flushing still saves
	// what the buffer holds, unless writing is what failed.
	if err := w.Flush(); err != nil && runErr == nil {
		runErr = err
	}
	closeErr := out.Close()
	if closeErr != nil {
		closeErr = fmt.Errorf("close %s: %w", opts.output, closeErr)
	}
	counts, cntErr := capt.Counters()
	if cntErr == nil {
		printSummary(stderr, capt, counts, w.Bytes(), opts.output)
	}
	return errors.Join(runErr, closeErr, cntErr)
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

func printSummary(stderr io.Writer, capt *capture.Capture, counts []bpf.Counters, bytes uint64, output string) {
	fmt.Fprintf(stderr, "ringcap: %d frames written to %s (%s)\n", capt.Packets(), outputName(output), formatBytes(bytes))
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
