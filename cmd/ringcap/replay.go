package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/ringcap/ringcap/capture"
	"github.com/ringcap/ringcap/capture/packet"
	"github.com/ringcap/ringcap/writer"
)

func replayCommand() *cli.Command {
	return &cli.Command{
		Name:  "replay",
		Usage: "run the XDP program over a recorded pcap or pcapng file, to try a selection",
		UsageText: "ringcap replay IN [-w OUT] [options] [EXPRESSION]\n\n" +
			"Without -w, prints a line per selected frame; with it, writes what a live\n" +
			"capture would have written, at the frames' recorded times. EXPRESSION is a\n" +
			"pcap-filter(7) expression, as for record.",
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return flagUsageError(c, err)
		},
		Flags: append(selectionFlags(), outputFlags("pcapng file to write, - for standard output; without it, print the selected frames")...),
		Action: func(c *cli.Context) error {
			opts, err := parseReplayFlags(c)
			if err != nil {
				return err
			}
			return replay(c.Context, opts, c.App.Writer, c.App.ErrWriter)
		},
	}
}

type replayOptions struct {
	input      string
	capture    capture.Config
	output     writer.Config // no Path: print the frames
	postRotate string
}

func parseReplayFlags(c *cli.Context) (replayOptions, error) {
	opts := replayOptions{postRotate: c.String("post-rotate")}
	if c.NArg() == 0 {
		return opts, badUsage(c, "no input: give the pcap or pcapng file to replay")
	}
	opts.input = c.Args().First()
	if err := checkFlagValues(c); err != nil {
		return opts, err
	}
	var err error
	if opts.capture, err = parseSelection(c, c.Args().Tail()); err != nil {
		return opts, err
	}
	if opts.output, err = parseOutput(c); err != nil {
		return opts, err
	}
	return opts, nil
}

// replay runs the program over every recorded frame and writes, or prints,
// what it selected.
func replay(ctx context.Context, opts replayOptions, stdout, stderr io.Writer) error {
	rp, err := capture.OpenReplay(opts.input, opts.capture)
	if err != nil {
		return err
	}
	defer rp.Close()
	names := make([]string, len(rp.Interfaces()))
	for i, ifc := range rp.Interfaces() {
		names[i] = ifc.Name
		if names[i] == "" {
			// pcap files name no interface.
			names[i] = fmt.Sprintf("%s:%d", filepath.Base(opts.input), i)
		}
	}
	ctx, stop := signalContext(ctx)
	defer stop()

	if opts.output.Path == "" {
		out := &frameLines{w: bufio.NewWriter(stdout), names: names}
		runErr := rp.Run(ctx, out)
		fmt.Fprintf(stderr, "ringcap: %d frames selected from %s\n", rp.Packets(), opts.input)
		replayNotes(stderr, rp)
		return errors.Join(runErr, printSummary(stderr, rp, withFrames(rp, names), nil))
	}

	post := newPostRotate(opts.postRotate, nil, stderr)
	defer post.wait()
	fileIfaces := make([]writer.Interface, len(names))
	for i, name := range names {
		fileIfaces[i] = writer.Interface{
			Name: name,
			// Wireshark names an interface by its description
			// where there is one: it starts with the name.
			Description: name + ": replay of " + filepath.Base(opts.input),
			Filter:      opts.capture.Selection(),
			SnapLen:     opts.capture.SnapLen,
		}
	}
	files, err := createFiles(opts.output, fileIfaces, rp, rp.Now, post.run)
	if err != nil {
		return err
	}
	err = closeFiles(files, rp.Run(ctx, files))
	replayNotes(stderr, rp)
	return errors.Join(err, printSummary(stderr, rp, withFrames(rp, names), files))
}

// withFrames is names with those of the interfaces no frame of the replay
// reached left empty: a file of thousands of interfaces gets a summary
// line for each that held frames only.
func withFrames(rp *capture.Replay, names []string) []string {
	counts, err := rp.Counters()
	if err != nil {
		return names
	}
	out := make([]string, len(names))
	for i, c := range counts {
		if c.Seen > 0 {
			out[i] = names[i]
		}
	}
	return out
}

// replayNotes accounts for the frames no program run saw.
func replayNotes(stderr io.Writer, rp *capture.Replay) {
	if rp.Short > 0 {
		fmt.Fprintf(stderr, "ringcap: %d frames shorter than an Ethernet header skipped: no driver hands such frames to XDP\n", rp.Short)
	}
	if rp.TooLarge > 0 {
		fmt.Fprintf(stderr, "ringcap: %d frames too large for a test run skipped\n", rp.TooLarge)
	}
}

// frameLines prints a line per selected frame, as tcpdump -r does: time,
// interface, direction, length and captured length.
type frameLines struct {
	w     *bufio.Writer
	names []string
}

func (f *frameLines) WritePacket(p packet.Packet) error {
	// tcpdump -r prints In and Out for a Linux cooked capture's frames.
	dir := "In"
	if p.Outbound {
		dir = "Out"
	}
	_, err := fmt.Fprintf(f.w, "%s %s %s length %d, captured %d\n",
		p.Time.Local().Format("2006-01-02 15:04:05.000000000"), f.names[p.Interface], dir, p.Length, len(p.Data))
	return err
}

func (f *frameLines) Flush() error { return f.w.Flush() }
