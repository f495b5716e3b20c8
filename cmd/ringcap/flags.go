package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/capture"
	"github.com/ringcap/ringcap/writer"
)

// The flags record and replay share: what to select, and where to write.

func selectionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.UintFlag{Name: "snaplen", Aliases: []string{"s"}, Value: 256, Usage: "bytes of each frame to keep; 0 keeps whole frames"},
		&cli.UintFlag{Name: "mtu", Value: 1500, Usage: "select frames whose L3 length (after Ethernet and VLAN tags) exceeds `BYTES`"},
		&cli.BoolFlag{Name: "all", Usage: "select every frame, whatever its length (an expression still narrows it)"},
		&cli.StringFlag{Name: "filter", Aliases: []string{"f"}, Usage: "capture only frames that match the pcap-filter(7) `EXPRESSION` too; or give it after the options, as to tcpdump"},
		&cli.StringFlag{Name: "hook", Value: "auto", Usage: "where inbound frames are captured: auto (XDP in native mode where the driver runs it and it costs less, else tc), xdp or tc"},
		&cli.StringFlag{Name: "ring-size", DefaultText: "4MiB a ring, from 8MiB to 64MiB in all", Usage: "memory for all the rings together, split evenly, each ring a power of two and a multiple of the page size (KiB, MiB, GiB)"},
		&cli.IntFlag{Name: "rings", DefaultText: "one per CPU, up to 16", Usage: "ring buffers the CPUs write into, spread evenly over them: 1 is one ring shared by every CPU"},
		// For measuring the wakeup threshold (docs/performance.md, Levers).
		&cli.StringFlag{Name: "wakeup-size", Hidden: true, Usage: "the ring's fill level from which a record wakes the reader (default: a quarter of the ring)"},
	}
}

func outputFlags(writeUsage string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "write", Aliases: []string{"w"}, Usage: writeUsage},
		&cli.BoolFlag{Name: "force", Usage: "replace the -w file if it exists as a regular file (never a link, device or directory)"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no live status line"},
		&cli.StringFlag{Name: "rotate-size", Aliases: []string{"C"}, Usage: "start a new file once the current one holds `SIZE` (bytes, KiB, MiB, GiB)"},
		&cli.DurationFlag{Name: "rotate-every", Aliases: []string{"G"}, Usage: "start a new file every `DURATION`"},
		&cli.BoolFlag{Name: "align", Usage: "with --rotate-every, start files on multiples of the duration in wall-clock time"},
		&cli.Uint64Flag{Name: "rotate-packets", Usage: "start a new file once the current one holds `N` packets"},
		&cli.IntFlag{Name: "max-files", Aliases: []string{"W"}, Usage: "keep at most `N` files, deleting the oldest named as this run names them (an earlier run's first)"},
		&cli.StringFlag{Name: "post-rotate", Aliases: []string{"z"}, Usage: "run `CMD` with each finished file's path as its argument"},
		&cli.StringFlag{Name: "compress", DefaultText: "none; record --upload: " + defaultUploadCompression.String(), Usage: "compress each finished file with `KIND` (gzip, lz4, zstd; none keeps it as written) beside the capture: NAME.gz, NAME.lz4, NAME.zst; -z, --upload and -W get the compressed file"},
		&cli.StringFlag{Name: "file-mode", Value: "0600", Usage: "permissions of new files, in octal"},
		&cli.BoolFlag{Name: "buffered", Usage: "write through the page cache even where the file system takes direct I/O (O_DIRECT), as tcpdump does"},
	}
}

// badUsage is a usage error prefixed with the command's name.
func badUsage(c *cli.Context, format string, args ...any) error {
	return usageError{fmt.Errorf("%s: %s", c.Command.Name, fmt.Sprintf(format, args...))}
}

// parseSelection reads the selection flags, and the filter expression
// from --filter or from words, the arguments left after the flags.
func parseSelection(c *cli.Context, words []string) (capture.Config, error) {
	cfg := capture.Config{CaptureAll: c.Bool("all")}
	var err error
	if cfg.Hook, err = capture.ParseHook(c.String("hook")); err != nil {
		return cfg, badUsage(c, "--hook: %v", err)
	}
	expr := strings.Join(words, " ")
	if c.IsSet("filter") {
		if expr != "" {
			return cfg, badUsage(c, "a filter expression both in --filter and after the options (%q): give one", expr)
		}
		expr = c.String("filter")
	}
	if strings.TrimSpace(expr) != "" {
		// A bad expression is refused before anything is attached or
		// created, in libpcap's own words.
		f, err := bpf.CompileFilter(expr)
		if err != nil {
			return cfg, badUsage(c, "%v", withFlags(err))
		}
		cfg.Filter = f
	}
	// As in tcpdump, 0 keeps whole frames; so does anything larger than
	// the largest frame, said in a note.
	snaplen := c.Uint("snaplen")
	switch {
	case snaplen == 0:
		snaplen = bpf.MaxSnapLen
	case snaplen > bpf.MaxSnapLen:
		fmt.Fprintf(c.App.ErrWriter, "ringcap: snaplen %d is more than any frame XDP gets (%d bytes): keeping whole frames, snaplen %d\n",
			snaplen, bpf.MaxSnapLen, bpf.MaxSnapLen)
		snaplen = bpf.MaxSnapLen
	}
	cfg.SnapLen = uint32(snaplen)
	mtu := c.Uint("mtu")
	if mtu > math.MaxUint16 {
		return cfg, badUsage(c, "mtu %d is out of range 0-%d", mtu, math.MaxUint16)
	}
	cfg.MTU = uint32(mtu)
	if err := parseRings(c, &cfg); err != nil {
		return cfg, err
	}
	if s := c.String("wakeup-size"); s != "" {
		wakeup, err := parseSize(s)
		if err != nil || wakeup == 0 || wakeup > uint64(cfg.RingSize) {
			return cfg, badUsage(c, "--wakeup-size %s: give a size from 1 byte up to a ring's, %s", s, bpf.FormatSize(uint64(cfg.RingSize)))
		}
		cfg.WakeupBytes = uint32(wakeup)
	}
	return cfg, nil
}

// parseRings reads --rings and --ring-size into the number of rings and
// each one's size. --ring-size is the memory of all of them: what a user
// budgets for, whatever the number of CPUs; a CPU whose ring is full
// writes into the others, so that one busy CPU has all of it.
func parseRings(c *cli.Context, cfg *capture.Config) error {
	cpus, err := bpf.PossibleCPUs()
	if err != nil {
		return err
	}
	rings := c.Int("rings")
	switch {
	case !c.IsSet("rings"):
		if rings, err = bpf.DefaultRings(); err != nil {
			return err
		}
	case rings < 1:
		return badUsage(c, "--rings %d: give 1 (one ring shared by every CPU) up to %d (one per CPU)", rings, cpus)
	case rings > cpus:
		return badUsage(c, "--rings %d: this host has %d CPUs, and a ring without one would take no frames of its own: give 1 to %d", rings, cpus, cpus)
	}
	total := bpf.DefaultRingsSize(rings)
	if c.IsSet("ring-size") {
		if total, err = parseSize(c.String("ring-size")); err != nil {
			return badUsage(c, "%v", err)
		}
		if rings == 1 {
			if err := bpf.ValidateRingSize(total); err != nil {
				return badUsage(c, "%v", err)
			}
		}
	}
	each, err := bpf.SplitRingSize(total, rings, cfg.SnapLen)
	if err != nil {
		return badUsage(c, "%v", withFlags(err))
	}
	if c.IsSet("ring-size") && uint64(each)*uint64(rings) != total {
		fmt.Fprintf(c.App.ErrWriter, "ringcap: --ring-size %s makes %d rings of %s, %s in all: each ring is a power of two\n",
			bpf.FormatSize(total), rings, bpf.FormatSize(uint64(each)), bpf.FormatSize(uint64(each)*uint64(rings)))
	}
	cfg.Rings, cfg.RingSize = rings, each
	// The ring must hold at least one record of this snaplen.
	if err := (bpf.Config{SnapLen: cfg.SnapLen, RingSize: cfg.RingSize, Rings: rings, Slots: 1}).Validate(); err != nil {
		return badUsage(c, "%v", err)
	}
	return nil
}

// parseCompress reads --compress into out, and says on stderr what could
// not be compressed.
func parseCompress(c *cli.Context, out *writer.Config) error {
	if c.IsSet("compress") {
		kind, ok := writer.ParseCompression(c.String("compress"))
		if !ok {
			return badUsage(c, "--compress %q: %s", c.String("compress"), flagHint(lookupFlag(c, "compress")))
		}
		out.Compress = kind
	}
	out.CompressWith = compressInChild
	stderr := c.App.ErrWriter
	out.CompressFailed = func(err error) { fmt.Fprintf(stderr, "ringcap: %v; capture goes on\n", withFlags(err)) }
	return nil
}

// parseOutput reads the output flags. An empty path is allowed here; the
// commands decide what it means.
func parseOutput(c *cli.Context) (writer.Config, error) {
	out := writer.Config{
		Path:      c.String("write"),
		Overwrite: c.Bool("force"),
		Buffered:  c.Bool("buffered"),
		Note:      func(line string) { fmt.Fprintf(c.App.ErrWriter, "ringcap: %s\n", line) },
		Policy: writer.Policy{
			Every:   c.Duration("rotate-every"),
			Align:   c.Bool("align"),
			Packets: c.Uint64("rotate-packets"),
		},
		MaxFiles: c.Int("max-files"),
	}
	if s := c.String("rotate-size"); s != "" {
		size, err := parseSize(s)
		if err != nil || size == 0 {
			return out, badUsage(c, "--rotate-size %q: give a size such as 100MiB", s)
		}
		out.Policy.Size = int64(size)
	}
	switch p := out.Policy; {
	case p.Every < 0:
		return out, badUsage(c, "--rotate-every %v is negative", p.Every)
	case p.Align && p.Every == 0:
		return out, badUsage(c, "--align needs --rotate-every")
	case out.MaxFiles < 0:
		return out, badUsage(c, "--max-files %d is negative", out.MaxFiles)
	}
	mode, err := strconv.ParseUint(c.String("file-mode"), 8, 32)
	if err != nil || mode > 0o777 || mode&0o600 != 0o600 {
		return out, badUsage(c, "--file-mode %q: give octal permissions that let ringcap read and write, e.g. 0600 or 0640", c.String("file-mode"))
	}
	out.FileMode = os.FileMode(mode)
	if err := parseCompress(c, &out); err != nil {
		return out, err
	}
	if out.Path == "" {
		if out.Policy != (writer.Policy{}) || out.MaxFiles != 0 || c.String("post-rotate") != "" || c.IsSet("compress") {
			return out, badUsage(c, "rotation, --post-rotate and --compress need files: give one with -w FILE")
		}
		return out, nil
	}
	if c.String("post-rotate") != "" && out.Path == "-" {
		return out, badUsage(c, "--post-rotate needs files, not standard output")
	}
	return out, checkOutput(c, out)
}

// checkOutput refuses an output that cannot be created: a file that
// exists is a failure at run time (exit 1), anything else a bad command
// line.
func checkOutput(c *cli.Context, out writer.Config) error {
	if err := withFlags(out.Check()); err != nil {
		var exists *writer.ExistError
		if errors.As(err, &exists) {
			return err
		}
		return badUsage(c, "%v", err)
	}
	return nil
}
