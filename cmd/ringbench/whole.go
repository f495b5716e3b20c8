package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/ringcap/ringcap/bpf/frames"
	"github.com/ringcap/ringcap/cmd/internal/veth"
)

// The whole-frames burst: every frame, whole, as tcpdump -s 0 keeps them,
// from a burst of mixed sizes that tcpreplay sends as fast as it can. The
// tools get the same memory: an 8 MiB ring, an 8 MiB buffer.
const wholeBurstName = "whole frames: burst of 60-8014 B"

func wholeFrameTools(ringcap string) []tool {
	return []tool{
		{
			name: "ringcap",
			args: func(out string) []string {
				return []string{ringcap, "record", "-i", rxIf, "-w", out, "-q", "--mode", "native", "--all", "-s", "0", "--ring-size", "8MiB"}
			},
			ready: "capturing on",
		},
		{
			name: "tcpdump",
			args: func(out string) []string {
				return []string{"tcpdump", "-i", rxIf, "-s", "0", "-B", "8192", "-w", out}
			},
			ready:     "listening on",
			needsPass: true,
		},
	}
}

// writeBurst writes n IPv4 frames of random lengths, 60 to 8014 bytes,
// the same on every run, as a pcap file for tcpreplay.
func writeBurst(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(13, 13))
	for i := range n {
		frame := frames.Spec{L3Len: 46 + r.IntN(8000-46+1)}.Build()
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(int64(i), 0), CaptureLength: len(frame), Length: len(frame)}
		if err := w.WritePacket(ci, frame); err != nil {
			return err
		}
	}
	return f.Close()
}

// measureWhole runs each tool on the burst, runs times in turn.
func measureWhole(p *veth.Network, ringcap, dir string, n, runs int) ([]row, error) {
	if _, err := exec.LookPath("tcpreplay"); err != nil {
		return nil, fmt.Errorf("the whole-frames burst needs tcpreplay (ringbench --install)")
	}
	burst := filepath.Join(dir, "burst.pcap")
	if err := writeBurst(burst, n); err != nil {
		return nil, fmt.Errorf("write the burst: %w", err)
	}
	sc := scenario{name: wholeBurstName, frames: n}
	var rows []row
	for range runs {
		for _, t := range wholeFrameTools(ringcap) {
			r := measureSend(p, t, sc, dir, func() (time.Duration, error) {
				start := time.Now()
				cmd := exec.Command("ip", "netns", "exec", p.Tx, "tcpreplay", "-q", "--topspeed", "-i", txIf, burst)
				if out, err := cmd.CombinedOutput(); err != nil {
					return 0, fmt.Errorf("tcpreplay: %v: %s", err, out)
				}
				return time.Since(start), nil
			})
			fmt.Fprintln(os.Stderr, r.String())
			rows = append(rows, r)
		}
	}
	return rows, nil
}

// printWhole prints the whole-frames rows.
func printWhole(w io.Writer, rows []row) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Whole frames (ringcap --all -s 0 --ring-size 8MiB, tcpdump -s 0 -B 8192), a burst of %d frames of 60-8014 bytes from tcpreplay --topspeed:\n", rows[0].scenario.frames)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| run | tool | frames received | received/s | written | lost | loss |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
	for i, r := range rows {
		run := strconv.Itoa(i/len(wholeFrameTools("")) + 1)
		if r.err != nil {
			fmt.Fprintf(w, "| %s | %s | | | | | %v |\n", run, r.tool, r.err)
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %d | %.0fk | %d | %d | %.1f%% |\n", run, r.tool, r.received, r.rxRate/1e3, r.written, r.lost(), r.lossPercent())
	}
}
