package main

import (
	"slices"
	"time"

	"github.com/urfave/cli/v2"

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
		Flags: slices.Concat([]cli.Flag{
			&cli.StringSliceFlag{Name: "interface", Aliases: []string{"i"}, Usage: "interface to capture on; repeat for more; any: every interface"},
			&cli.Uint64Flag{Name: "count", Aliases: []string{"c"}, Usage: "stop after writing `N` frames"},
		}, liveFlags(), []cli.Flag{
			&cli.StringFlag{Name: "metrics", Usage: "serve Prometheus metrics at http://`ADDR`/metrics while capturing (e.g. 127.0.0.1:9464 or :9464)"},
			netnsFlag(),
			relinquishFlag(),
		}, selectionFlags(), outputFlags("pcapng file to write, - for standard output"), uploadFlags()),
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

// liveFlags are the flags of a live capture that record and extcap share,
// besides selectionFlags.
func liveFlags() []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: "duration", Usage: "stop after `D` (e.g. 30s, 10m)"},
		&cli.StringFlag{Name: "direction", Aliases: []string{"Q"}, Value: "inout", Usage: "capture frames received (in), sent (out) or both (inout), as tcpdump's -Q"},
		&cli.StringFlag{Name: "mode", Value: "auto", Usage: "XDP mode: auto (native; never generic), native, or generic (costs as much as tc or more; some drivers make the kernel warn)"},
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
	if opts.capture, err = parseLive(c, ifaces, c.Args().Slice()); err != nil {
		return opts, err
	}
	if opts.output, err = parseOutput(c); err != nil {
		return opts, err
	}
	if opts.upload, opts.uploading, err = parseUpload(c, opts.output); err != nil {
		return opts, err
	}
	if opts.uploading && !c.IsSet("compress") {
		opts.output.Compress = defaultUploadCompression
		if err := checkOutput(c, opts.output); err != nil {
			return opts, err
		}
	}
	if opts.privileges, err = planPrivileges(c, slices.Contains(ifaces, capture.AnyInterface)); err != nil {
		return opts, err
	}
	return opts, nil
}

// parseLive reads what a live capture on ifaces selects (words: an
// expression after the options), its XDP mode and directions.
func parseLive(c *cli.Context, ifaces, words []string) (capture.Config, error) {
	cfg, err := parseSelection(c, words)
	if err != nil {
		return cfg, err
	}
	cfg.Interfaces = ifaces
	// One that goes away ends its hooks, not the capture; the last one
	// ends it. With -i any, one that appears is captured on.
	cfg.FollowLinks = true
	if cfg.Mode, err = capture.ParseMode(c.String("mode")); err != nil {
		return cfg, badUsage(c, "%v", err)
	}
	if cfg.Directions, err = capture.ParseDirections(c.String("direction")); err != nil {
		return cfg, badUsage(c, "-Q: %v", err)
	}
	// --hook auto, the default, chooses nothing: Wireshark's options
	// dialog gives it, and every other option, once they are saved.
	if cfg.Directions == capture.Out && c.IsSet("hook") && cfg.Hook != capture.HookAuto {
		return cfg, badUsage(c, "--hook chooses where inbound frames are captured, and -Q out captures none: leave one out")
	}
	return cfg, nil
}

// netnsSuffix says which network namespace the capture is in, if not
// ringcap's own.
func netnsSuffix(name string) string {
	if name == "" {
		return ""
	}
	return " in netns " + name
}
