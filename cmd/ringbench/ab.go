package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/cmd/internal/veth"
)

// The sharded-rings comparison: ringcap with its default rings (one per
// CPU) against one ring shared by every CPU, with the same memory for
// all the rings together, in turn on the same traffic, the files on a
// tmpfs so that the disk does not limit either.
//
// Each run keeps its last two files of abFileSize, deleting the older
// ones as it goes: a tmpfs write to memory nobody used of late can cost
// several times one to memory just freed (a virtual machine whose host
// takes free memory back faults it in again), so gigabytes of files
// would make each run cheaper than the one before it, whichever side.
//
//	go run ./cmd/ringbench --traffic "sustained 10M" --rings-ab
const (
	abRingSize = "8MiB"
	abFileSize = "256MiB"
	abRounds   = 3 // alternations, so that the machine's drift shows
)

// abTraffic is the comparison's traffic unless --traffic says otherwise:
// two generator threads, on two queues.
const abTraffic = "sustained 10M"

// ringsAB measures and prints the comparison; the smoke run, one round,
// checks that ringcap accounts for every frame.
func ringsAB(c *cli.Context, p *veth.Network, gen *generator, ringcap, dir string, scenarios []scenario, frame []byte) error {
	rounds := abRounds
	if c.Bool("smoke") {
		rounds = 1
	} else if !c.IsSet("traffic") {
		scenarios = slices.DeleteFunc(scenarios, func(sc scenario) bool { return sc.name != abTraffic })
	}
	rows, err := measureRingsAB(p, gen, ringcap, dir, scenarios, frame, rounds)
	printRingsAB(os.Stdout, rows)
	if err == nil && c.Bool("smoke") {
		err = checkRingsAB(rows)
	}
	return err
}

// abTools are the two sides: sharded first, then one ring.
func abTools(ringcap string) []tool {
	args := func(extra ...string) func(string) []string {
		return func(out string) []string {
			return append([]string{ringcap, "record", "-Q", "in", "-i", rxIf, "-w", out, "-q", "--mode", "native",
				"--ring-size", abRingSize, "-C", abFileSize, "-W", "2"}, extra...)
		}
	}
	return []tool{
		{name: "ringcap-sharded", args: args(), ready: "capturing on"},
		{name: "ringcap-1-ring", args: args("--rings", "1"), ready: "capturing on"},
	}
}

// abRow is one run of one side: the row ringbench measures for every
// tool, its written the frames ringcap saved in all its files, and what
// ringcap says of its rings and of the frames it lost.
type abRow struct {
	row
	kept    uint64 // the frames in the files left at the end
	rings   string // "2 rings of 4MiB", from ringcap's first line
	summary summary
}

// summary is what ringcap's summary says: the frames it saved, and the
// program's counters over every CPU (the last line).
type summary struct {
	saved                                                uint64
	seen, selected, ringWritten, ringFull, reserveFailed uint64
}

var (
	ringsLine   = regexp.MustCompile(`(\d+ rings? of \S+),`)
	savedLine   = regexp.MustCompile(`(?m)^ringcap: (\d+) frames written to `)
	summaryLine = regexp.MustCompile(`(?m)^ringcap: (\d+) seen, (\d+) selected, (\d+) written to the ring, (\d+) dropped because the ring was full, (\d+) reserve failures$`)
)

// parseRingcap reads the rings' layout and the summary from what ringcap
// printed; with several interfaces the summary's last line is the total.
func parseRingcap(output string) (rings string, s summary, err error) {
	m := ringsLine.FindStringSubmatch(output)
	saved := savedLine.FindStringSubmatch(output)
	all := summaryLine.FindAllStringSubmatch(output, -1)
	if m == nil || saved == nil || all == nil {
		return "", s, fmt.Errorf("ringcap printed no rings or no summary: %q", output)
	}
	var n [6]uint64
	for i, f := range append(saved[1:], all[len(all)-1][1:]...) {
		if n[i], err = strconv.ParseUint(f, 10, 64); err != nil {
			return "", s, err
		}
	}
	return m[1], summary{n[0], n[1], n[2], n[3], n[4], n[5]}, nil
}

// measureRingsAB runs the two sides in turn, rounds times, on each
// scenario, ringcap's files in dir (a tmpfs), each run's removed once
// counted.
func measureRingsAB(p *veth.Network, gen *generator, ringcap, dir string, scenarios []scenario, frame []byte, rounds int) ([]abRow, error) {
	return measureSides(p, gen, abTools(ringcap), dir, scenarios, frame, rounds)
}

// measureSides runs ringcap as each side says in turn, rounds times, on
// each scenario, its files in dir, each run's removed once counted: the
// frames written are those ringcap's summary counts, whatever files a
// side's -W deleted.
func measureSides(p *veth.Network, gen *generator, sides []tool, dir string, scenarios []scenario, frame []byte, rounds int) ([]abRow, error) {
	var rows []abRow
	for _, sc := range scenarios {
		for range rounds {
			for _, t := range sides {
				r := abRow{row: measure(p, gen, t, sc, frame, dir)}
				if r.err == nil {
					r.rings, r.summary, r.err = parseRingcap(r.output)
					r.kept, r.written = r.written, r.summary.saved
				}
				fmt.Fprintln(os.Stderr, r.String())
				rows = append(rows, r)
				if err := removeFiles(dir, t.name); err != nil {
					return rows, err
				}
			}
		}
	}
	return rows, nil
}

// removeFiles removes the files of the tool called name: name.pcapng, or
// its rotated files, compressed or not.
func removeFiles(dir, name string) error {
	paths, err := filepath.Glob(filepath.Join(dir, name+"[._]*"))
	for _, path := range paths {
		err = errors.Join(err, os.Remove(path))
	}
	return err
}

// checkRingsAB is the smoke run's check: every frame ringcap took from a
// ring is in its file (the smoke run's frames fill less than one), and
// every selected frame is either in a ring or counted as lost.
func checkRingsAB(rows []abRow) error {
	for _, r := range rows {
		s := r.summary
		switch {
		case r.err != nil:
			return fmt.Errorf("%s: %w", r.tool, r.err)
		case s.selected < uint64(r.scenario.frames):
			return fmt.Errorf("%s selected %d of the %d frames sent", r.tool, s.selected, r.scenario.frames)
		case s.selected != s.ringWritten+s.ringFull+s.reserveFailed:
			return fmt.Errorf("%s: %d selected, but %d written to a ring and %d lost", r.tool, s.selected, s.ringWritten, s.ringFull+s.reserveFailed)
		case r.kept != s.saved || s.saved != s.ringWritten:
			return fmt.Errorf("%s: its file holds %d frames, it says it saved %d of the %d written to its rings", r.tool, r.kept, s.saved, s.ringWritten)
		}
	}
	return nil
}

// printRingsAB prints, for each scenario, each run, then each round's
// ratios, sharded over one ring.
func printRingsAB(w io.Writer, rows []abRow) {
	n := len(abTools(""))
	for start := 0; start < len(rows); {
		end := start + 1
		for end < len(rows) && rows[end].scenario.name == rows[start].scenario.name {
			end++
		}
		printScenarioAB(w, rows[start:end], n)
		start = end
	}
}

// printScenarioAB prints the runs of one scenario, n sides a round.
// Machine CPU is per frame sent: the generator, the receive path and the
// program (spinning on a ring's lock included) work for every frame,
// written or lost.
func printScenarioAB(w io.Writer, rows []abRow, n int) {
	fmt.Fprintf(w, "\n### Sharded rings against one ring: %s (ringcap --ring-size %s, files on tmpfs)\n\n", rows[0].scenario.name, abRingSize)
	fmt.Fprintln(w, "| round | rings | frames sent | sent/s | written | lost | ring full | reserve failed | ringcap CPU s | ringcap ns/written | machine CPU s | machine ns/sent |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for i, r := range rows {
		if r.err != nil {
			fmt.Fprintf(w, "| %d | %s | | | | | | | | | | %v |\n", i/n+1, r.tool, r.err)
			continue
		}
		fmt.Fprintf(w, "| %d | %s | %d | %.2fM | %d | %d (%.1f%%) | %d | %d | %.2f | %.0f | %.2f | %.0f |\n", i/n+1, r.rings,
			r.received, r.offered/1e6, r.written, r.lost(), r.lossPercent(), r.summary.ringFull, r.summary.reserveFailed,
			r.cpu.Seconds(), nsPer(r.cpu.Nanoseconds(), r.written), r.machine.Seconds(), nsPer(r.machine.Nanoseconds(), r.received))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| round | written, sharded / 1 ring | ringcap CPU per written, sharded / 1 ring | machine CPU per frame sent, sharded / 1 ring |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	for i := 0; i+1 < len(rows); i += n {
		a, b := rows[i], rows[i+1]
		if a.err != nil || b.err != nil || a.written == 0 || b.written == 0 {
			fmt.Fprintf(w, "| %d | | | |\n", i/n+1)
			continue
		}
		fmt.Fprintf(w, "| %d | %.2f | %.2f | %.2f |\n", i/n+1, float64(a.written)/float64(b.written),
			nsPer(a.cpu.Nanoseconds(), a.written)/nsPer(b.cpu.Nanoseconds(), b.written),
			nsPer(a.machine.Nanoseconds(), a.received)/nsPer(b.machine.Nanoseconds(), b.received))
	}
}

func nsPer(ns int64, frames uint64) float64 {
	if frames == 0 {
		return 0
	}
	return float64(ns) / float64(frames)
}

// tmpfs is a tmpfs ringbench mounts for the tools' files, and unmounts.
type tmpfs struct{ dir string }

func mountTmpfs(dir string) (*tmpfs, error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	if err := unix.Mount("ringbench", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return nil, fmt.Errorf("mount a tmpfs on %s: %w", dir, err)
	}
	return &tmpfs{dir: dir}, nil
}

// unmount detaches the tmpfs even while a tool still holds a file of it
// open; the memory goes once the last one closes.
func (t *tmpfs) unmount() {
	unix.Unmount(t.dir, unix.MNT_DETACH)
}
