package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/capture"
	"github.com/ringcap/ringcap/writer"
)

func recordCommand() *cli.Command {
	return &cli.Command{
		Name:  "record",
		Usage: "capture selected frames from interfaces into pcapng files",
		UsageText: "ringcap record -i IFACE [-i IFACE ...] -w FILE [options] [EXPRESSION]\n\n" +
			"EXPRESSION is a pcap-filter(7) expression, as tcpdump takes it: only the\n" +
			"selected frames (by default those above --mtu) that match it are captured.",
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return flagUsageError(c, err)
		},
		Flags: append(append([]cli.Flag{
			&cli.StringSliceFlag{Name: "interface", Aliases: []string{"i"}, Usage: "interface to capture on; repeat for more; any: every interface"},
			&cli.Uint64Flag{Name: "count", Aliases: []string{"c"}, Usage: "stop after writing `N` frames"},
			&cli.DurationFlag{Name: "duration", Usage: "stop after `D` (e.g. 30s, 10m)"},
			&cli.StringFlag{Name: "direction", Aliases: []string{"Q"}, Value: "inout", Usage: "capture frames received (in), sent (out) or both (inout), as tcpdump's -Q"},
			&cli.StringFlag{Name: "mode", Value: "auto", Usage: "XDP mode: auto (native; never generic), native, or generic (costs as much as tc or more; some drivers make the kernel warn)"},
			&cli.StringFlag{Name: "metrics", Usage: "serve Prometheus metrics at http://`ADDR`/metrics while capturing (e.g. 127.0.0.1:9464 or :9464)"},
			netnsFlag(),
			relinquishFlag(),
		}, selectionFlags()...), append(outputFlags("pcapng file to write, - for standard output"), uploadFlags()...)...),
		Action: func(c *cli.Context) error {
			opts, err := parseRecordFlags(c)
			if err != nil {
				return err
			}
			if opts.netns, err = checkNetns(c); err != nil {
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
	metrics    string // address to serve metrics at; empty: none
	upload     uploadOptions
	uploading  bool   // --upload
	netns      string // the network namespace captured in, as --netns named it
	privileges privileges
}

func parseRecordFlags(c *cli.Context) (recordOptions, error) {
	opts := recordOptions{
		count:      c.Uint64("count"),
		duration:   c.Duration("duration"),
		quiet:      c.Bool("quiet"),
		postRotate: c.String("post-rotate"),
		metrics:    c.String("metrics"),
	}
	ifaces := c.StringSlice("interface")
	if len(ifaces) == 0 {
		return opts, badUsage(c, "no interface: give one with -i IFACE")
	}
	if c.String("write") == "" {
		return opts, badUsage(c, "no output file: give one with -w FILE (- for standard output)")
	}
	if err := checkFlagValues(c); err != nil {
		return opts, err
	}
	if err := checkInterfaceNames(ifaces); err != nil {
		return opts, badUsage(c, "%v", err)
	}
	if c.IsSet("metrics") {
		if err := checkMetricsAddr(opts.metrics); err != nil {
			return opts, badUsage(c, "%v", err)
		}
	}
	var err error
	if opts.capture, err = parseSelection(c, c.Args().Slice()); err != nil {
		return opts, err
	}
	opts.capture.Interfaces = ifaces
	// One that goes away ends its hooks, not the capture; the last one
	// ends it. With -i any, one that appears is captured on.
	opts.capture.FollowLinks = true
	if opts.capture.Mode, err = capture.ParseMode(c.String("mode")); err != nil {
		return opts, badUsage(c, "%v", err)
	}
	if opts.capture.Directions, err = capture.ParseDirections(c.String("direction")); err != nil {
		return opts, badUsage(c, "-Q: %v", err)
	}
	if opts.capture.Directions == capture.Out && c.IsSet("hook") {
		return opts, badUsage(c, "--hook chooses where inbound frames are captured, and -Q out captures none: leave one out")
	}
	if opts.output, err = parseOutput(c); err != nil {
		return opts, err
	}
	if opts.upload, opts.uploading, err = parseUpload(c, opts.output); err != nil {
		return opts, err
	}
	if opts.privileges, err = planPrivileges(c, slices.Contains(ifaces, capture.AnyInterface)); err != nil {
		return opts, err
	}
	return opts, nil
}

// netnsSuffix says which network namespace the capture is in, if not
// ringcap's own.
func netnsSuffix(name string) string {
	if name == "" {
		return ""
	}
	return " in netns " + name
}

// record runs one capture until a signal, the count or the duration ends
// it, then writes out every frame left in the ring and prints a summary.
func record(ctx context.Context, opts recordOptions, stderr io.Writer) error {
	var metricsListener net.Listener
	if opts.metrics != "" {
		var err error
		if metricsListener, err = listenMetrics(opts.metrics); err != nil {
			return err
		}
		defer metricsListener.Close()
	}
	capt, err := capture.Open(opts.capture)
	if err != nil {
		return withFlagFixes(err)
	}
	defer capt.Close()

	post := newPostRotate(opts.postRotate, stderr)
	if opts.uploading {
		// The credentials --upload uses are ringcap's, not -z's.
		post.env = withoutAWS(os.Environ())
	}
	defer post.wait()
	// A file interface per hook: each direction of an interface has its
	// own counters, and so its own statistics in the file.
	hooks := capt.Hooks()
	describe := func(h capture.Hook) writer.Interface {
		return writer.Interface{
			Name: h.Interface,
			// Wireshark names an interface by its description
			// where there is one: it starts with the name.
			Description: h.Interface + netnsSuffix(opts.netns) + ": " + h.Describe(),
			Filter:      opts.capture.Selection(),
			SnapLen:     opts.capture.SnapLen,
			// Only XDP knows the receive queue.
			Queues: h.XDP,
			OS:     hostOS(),
		}
	}
	fileIfaces := make([]writer.Interface, len(hooks))
	for i, h := range hooks {
		fileIfaces[i] = describe(h)
	}
	finished := post.run
	var up *uploads
	if opts.uploading {
		if up, err = startUploads(ctx, opts.upload, opts.output, stderr); err != nil {
			return err
		}
		finished = up.after(post)
		opts.output.Adopt = up.adopt
	}
	// The AWS configuration is read by now, as the user ringcap was
	// started as; files are created, and uploads sent, as -Z's.
	if err := opts.privileges.drop(func() error { _, err := capt.Counters(); return err }); err != nil {
		return err
	}
	if err := opts.privileges.checkOutputDir(opts.output.Path); err != nil {
		return err
	}
	files, err := createFiles(opts.output, fileIfaces, capt, time.Now, finished)
	if err != nil {
		if up != nil {
			// A disk an earlier run filled: its files go out (and,
			// with --upload-delete, make room) before ringcap exits.
			up.drain()
			up.finish()
		}
		return err
	}
	if up != nil && up.leftovers > 0 {
		up.line("--upload: %d files an earlier run wrote to %s go first", up.leftovers, filepath.Dir(opts.output.Path))
	}
	if metricsListener != nil {
		// Served until ringcap is done, after the last file is closed:
		// a last scrape sees the summary's figures.
		serving, stopServing := context.WithCancel(context.Background())
		defer stopServing()
		newMetrics(capt, files, post, up).serve(serving, metricsListener)
		announceMetrics(stderr, opts.metrics, metricsListener)
	}

	ctx, stop := signalContext(ctx)
	defer stop()
	if opts.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.duration)
		defer cancel()
	}

	for _, err := range capt.Skipped() {
		fmt.Fprintf(stderr, "ringcap: %v: left out, the capture goes on with the other interfaces\n", withFlagFixes(err))
	}
	var ifaceNames []string
	for _, h := range hooks {
		if !slices.Contains(ifaceNames, h.Interface) {
			ifaceNames = append(ifaceNames, h.Interface)
		}
	}
	firstLine := func(ifc string, hooks []capture.Hook) {
		var where []string
		for _, h := range hooks {
			if h.Interface == ifc {
				where = append(where, h.Describe())
			}
		}
		fmt.Fprintf(stderr, "ringcap: capturing on %s%s (%s): %s, snaplen %d, %s, to %s (%s)\n",
			ifc, netnsSuffix(opts.netns), strings.Join(where, "; "), selectionText(opts.capture), opts.capture.SnapLen,
			ringsText(capt), outputName(files.Current()), files.IOMode())
	}
	for _, ifc := range ifaceNames {
		firstLine(ifc, hooks)
	}
	status := startStatus(stderr, opts.quiet, capt, files)
	runErr := capt.Run(ctx, &captureSink{Files: files, describe: describe, firstLine: firstLine, stderr: stderr}, opts.count)
	// The last interface going away ends the capture as Ctrl-C does,
	// but with exit status 1, so that a service manager starts ringcap
	// again.
	allGone := errors.Is(runErr, capture.ErrNoInterface)
	if allGone {
		runErr = nil
	}
	status.stop()
	if up != nil {
		// The wait for uploads starts now, and bounds --max-files'
		// wait for them as the last file is finished.
		up.drain()
	}
	err = closeFiles(files, runErr)
	var names []string
	for _, h := range capt.Hooks() {
		names = append(names, h.Interface+" "+h.Direction.String())
	}
	err = errors.Join(err, printSummary(stderr, capt, names, files))
	if up != nil {
		up.finish()
	}
	if allGone {
		err = errors.Join(err, capture.ErrNoInterface)
	}
	return err
}

// ringsText is the rings' layout, "2 rings of 4MiB".
func ringsText(capt *capture.Capture) string {
	unit := "rings"
	if capt.Rings() == 1 {
		unit = "ring"
	}
	return fmt.Sprintf("%d %s of %s", capt.Rings(), unit, bpf.FormatSize(uint64(capt.RingSize())))
}
