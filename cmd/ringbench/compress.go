package main

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/urfave/cli/v2"

	"github.com/ringcap/ringcap/cmd/internal/veth"
	"github.com/ringcap/ringcap/writer"
)

// The compression measurements (--compress):
//
//   - each kind on two files of 64 MiB that ringcap wrote with its
//     defaults (snap length 256): a TCP transfer between the namespaces
//     (random payload, as TLS carries) and the protocol corpus
//     (testdata/protocols.pcap) replayed over and over; the ratio, and the
//     CPU time of the thread that compressed, per MiB of capture;
//
//   - the sustained run with --compress and without, in turn, -C 64MiB
//     -W 2, files on the disk: frames written, and ringcap's CPU time (its
//     compression included) per frame written.
//
//     go run ./cmd/ringbench --compress
const (
	compressSampleSize = "64MiB"
	compressRounds     = 3
)

var compressKinds = []writer.Compression{writer.Gzip, writer.LZ4, writer.Zstd}

func compressBench(c *cli.Context, p *veth.Network, gen *generator, ringcap, dir string, traffic trafficPlan, frame []byte) error {
	rounds := max(c.Int("rounds"), 1)
	if c.Bool("smoke") {
		rounds = 1
	}
	samples, err := compressSamples(p, ringcap, dir, c.Bool("smoke"))
	if err != nil {
		return err
	}
	rows, err := measureCompression(samples, dir, rounds)
	if err != nil {
		return err
	}
	printCompression(os.Stdout, rows)
	scenarios := traffic.loaded
	if !c.IsSet("traffic") && !c.Bool("smoke") {
		scenarios = slices.DeleteFunc(scenarios, func(sc scenario) bool { return sc.name != abTraffic })
	}
	sides := compressTools(ringcap)
	if want := c.StringSlice("tool"); len(want) > 0 {
		// The files as written are always measured: the baseline.
		sides = slices.DeleteFunc(sides, func(t tool) bool { return t.name != "ringcap-rotate" && !slices.Contains(want, t.name) })
	}
	abRows, err := measureSides(p, gen, sides, dir, scenarios, frame, rounds)
	printCompressAB(os.Stdout, abRows, len(sides))
	return err
}

// compressSample is a file ringcap wrote, to compress.
type compressSample struct {
	name, path string
}

// compressSamples records the TCP transfer and replays the corpus, each
// into files of compressSampleSize, and keeps the first of each.
func compressSamples(p *veth.Network, ringcap, dir string, smoke bool) ([]compressSample, error) {
	transfer := int64(512 << 20)
	copies := 8000
	if smoke {
		transfer, copies = 8<<20, 20
	}
	tcp, err := recordTCP(p, ringcap, dir, transfer)
	if err != nil {
		return nil, fmt.Errorf("the TCP transfer's capture: %w", err)
	}
	corpus, err := replayCorpus(ringcap, dir, copies)
	if err != nil {
		return nil, fmt.Errorf("the corpus's capture: %w", err)
	}
	return []compressSample{{"TCP transfer", tcp}, {"protocol corpus", corpus}}, nil
}

// recordTCP records, with ringcap on the receiving end at MTU 1500, a
// TCP transfer of n bytes from the sending namespace, and returns the
// first file.
func recordTCP(p *veth.Network, ringcap, dir string, n int64) (string, error) {
	if err := p.SetMTU(1500); err != nil {
		return "", err
	}
	defer p.SetMTU(9000)
	// Frames of the MTU, as a NIC's wire carries them, not veth's
	// segmentation offload's 64 KiB ones.
	if err := setOffloads(p, "off"); err != nil {
		return "", err
	}
	defer setOffloads(p, "on")
	t := tool{name: "tcp-transfer", ready: "capturing on", args: func(out string) []string {
		return []string{ringcap, "record", "-i", rxIf, "--all", "-w", out, "-q", "-C", compressSampleSize, "--ring-size", "64MiB"}
	}}
	proc, err := t.start(p, dir)
	if err != nil {
		return "", err
	}
	err = tcpTransfer(p, n)
	time.Sleep(time.Second)
	if _, stopErr := proc.stop(); err == nil {
		err = stopErr
	}
	if err != nil {
		return "", err
	}
	return firstFile(filepath.Join(dir, t.name))
}

// setOffloads turns the link's segmentation and receive offloads on or
// off at both ends.
func setOffloads(p *veth.Network, state string) error {
	for _, end := range []struct{ ns, ifc string }{{p.Tx, txIf}, {p.Rx, rxIf}} {
		out, err := exec.Command("ip", "netns", "exec", end.ns, "ethtool", "-K", end.ifc, "tso", state, "gso", state, "gro", state).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ethtool -K %s: %v: %s", end.ifc, err, out)
		}
	}
	return nil
}

// firstFile is the first of the rotated files named after base.
func firstFile(base string) (string, error) {
	paths, err := filepath.Glob(base + "_*.pcapng")
	if err != nil || len(paths) == 0 {
		return "", fmt.Errorf("no file %s_*.pcapng: %v", base, err)
	}
	slices.Sort(paths)
	return paths[0], nil
}

// tcpTransfer sends n random bytes over TCP from the sending namespace
// to the receiving one.
func tcpTransfer(p *veth.Network, n int64) error {
	addr := net.JoinHostPort(p.Links[0].RxAddr, "5201")
	var l net.Listener
	if err := veth.Do(p.Rx, func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		return err
	}
	defer l.Close()
	received := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, err = io.Copy(io.Discard, c)
			c.Close()
		}
		received <- err
	}()
	var conn net.Conn
	if err := veth.Do(p.Tx, func() (err error) { conn, err = net.Dial("tcp", addr); return err }); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	rnd := rand.NewChaCha8([32]byte{1})
	for sent := int64(0); sent < n; sent += int64(len(buf)) {
		rnd.Read(buf)
		if _, err := conn.Write(buf); err != nil {
			conn.Close()
			return err
		}
	}
	conn.Close()
	return <-received
}

// replayCorpus replays testdata/protocols.pcap, copies times over, with
// ringcap's defaults and every frame selected, and returns the first
// file.
func replayCorpus(ringcap, dir string, copies int) (string, error) {
	in := filepath.Join(dir, "corpus.pcap")
	if err := repeatCapture("testdata/protocols.pcap", in, copies); err != nil {
		return "", err
	}
	defer os.Remove(in)
	base := filepath.Join(dir, "corpus")
	out, err := exec.Command(ringcap, "replay", in, "--all", "-w", base+".pcapng", "-q", "-C", compressSampleSize).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ringcap replay: %v: %s", err, out)
	}
	return firstFile(base)
}

// repeatCapture writes the frames of the pcap file in into out, copies
// times over, a microsecond apart.
func repeatCapture(in, out string, copies int) error {
	f, err := os.Open(in)
	if err != nil {
		return fmt.Errorf("%w (run ringbench from the repository)", err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return err
	}
	type frame struct {
		data   []byte
		length int
	}
	var frames []frame
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		frames = append(frames, frame{data, ci.Length})
	}
	o, err := os.Create(out)
	if err != nil {
		return err
	}
	defer o.Close()
	w := pcapgo.NewWriterNanos(o)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return err
	}
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for range copies {
		for _, fr := range frames {
			at = at.Add(time.Microsecond)
			ci := gopacket.CaptureInfo{Timestamp: at, CaptureLength: len(fr.data), Length: fr.length}
			if err := w.WritePacket(ci, fr.data); err != nil {
				return err
			}
		}
	}
	return o.Close()
}

// compressRow is one kind on one sample, one round.
type compressRow struct {
	sample           string
	kind             writer.Compression
	size, compressed int64
	cpu, wall        time.Duration
}

// measureCompression compresses a copy of each sample with each kind in
// turn, rounds times.
func measureCompression(samples []compressSample, dir string, rounds int) ([]compressRow, error) {
	var rows []compressRow
	for _, s := range samples {
		for range rounds {
			for _, kind := range compressKinds {
				r, err := compressOnce(s, kind, filepath.Join(dir, "sample.pcapng"))
				if err != nil {
					return rows, err
				}
				fmt.Fprintf(os.Stderr, "%s, %s: %d to %d bytes, CPU %v\n", r.sample, r.kind, r.size, r.compressed, r.cpu)
				rows = append(rows, r)
			}
		}
	}
	return rows, nil
}

// compressOnce copies the sample to work and compresses it as ringcap
// does, measuring the CPU time of the thread that does.
func compressOnce(s compressSample, kind writer.Compression, work string) (compressRow, error) {
	r := compressRow{sample: s.name, kind: kind}
	if err := copyFile(s.path, work); err != nil {
		return r, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0, err := threadCPU()
	if err != nil {
		return r, err
	}
	start := time.Now()
	out, err := kind.CompressFile(work, 0o600)
	if err != nil {
		return r, err
	}
	r.wall = time.Since(start)
	cpu1, err := threadCPU()
	if err != nil {
		return r, err
	}
	r.cpu = cpu1 - cpu0
	st0, err0 := os.Stat(s.path)
	st1, err1 := os.Stat(out)
	if err := errors.Join(err0, err1); err != nil {
		return r, err
	}
	r.size, r.compressed = st0.Size(), st1.Size()
	return r, os.Remove(out)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// printCompression prints each sample's kinds: the ratio, and the median
// over the rounds of the CPU time per MiB and the speed.
func printCompression(w io.Writer, rows []compressRow) {
	fmt.Fprintln(w, "\n### Compression of a 64 MiB file, as --compress does it (one thread)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| capture | kind | compressed | ratio | CPU ms/MiB | MiB/s | rounds |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
	for _, s := range uniq(rows, func(r compressRow) string { return r.sample }) {
		for _, kind := range compressKinds {
			var cpus, walls []float64
			var last compressRow
			for _, r := range rows {
				if r.sample == s && r.kind == kind {
					mib := float64(r.size) / (1 << 20)
					cpus, walls, last = append(cpus, float64(r.cpu.Milliseconds())/mib), append(walls, mib/r.wall.Seconds()), r
				}
			}
			fmt.Fprintf(w, "| %s | %s | %.1f MiB | %.2f | %.1f | %.0f | %d |\n", s, kind, float64(last.compressed)/(1<<20),
				float64(last.size)/float64(last.compressed), median(cpus), median(walls), len(cpus))
		}
	}
}

func uniq[T any](rows []T, key func(T) string) []string {
	var keys []string
	for _, r := range rows {
		if k := key(r); !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

// compressTools are the sides of the sustained run: files as written
// first, then each kind, then the file compressed as it is written:
// standard output into zstd (its default level, one thread), the only
// live compression there is.
func compressTools(ringcap string) []tool {
	args := func(extra ...string) func(string) []string {
		return func(out string) []string {
			return append([]string{ringcap, "record", "-Q", "in", "-i", rxIf, "-w", out, "-q", "--mode", "native",
				"--ring-size", "64MiB", "-C", compressSampleSize, "-W", "2"}, extra...)
		}
	}
	sides := []tool{{name: "ringcap-rotate", args: args(), ready: "capturing on"}}
	for _, kind := range compressKinds {
		sides = append(sides, tool{name: "ringcap-" + kind.String(), args: args("--compress", kind.String()), ready: "capturing on"})
	}
	live := tool{name: "ringcap-live-zstd", ready: "capturing on",
		args: func(string) []string {
			return []string{ringcap, "record", "-Q", "in", "-i", rxIf, "-w", "-", "-q", "--mode", "native", "--ring-size", "64MiB"}
		},
		pipeTo: func(out string) []string { return []string{"zstd", "-q", "-3", "-T1", "-f", "-o", out + ".zst"} },
	}
	return append(sides, live)
}

// printCompressAB prints each run, then each round's ratios of each kind
// over the files as written.
func printCompressAB(w io.Writer, rows []abRow, n int) {
	fmt.Fprintf(w, "\n### Sustained run with --compress and without (-C %s -W 2, files on the disk)\n\n", compressSampleSize)
	fmt.Fprintln(w, "| round | ringcap | frames sent | written | lost | ring full | ringcap CPU s | ringcap ns/written |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- |")
	for i, r := range rows {
		if r.err != nil {
			fmt.Fprintf(w, "| %d | %s | | | | | | %v |\n", i/n+1, r.tool, r.err)
			continue
		}
		fmt.Fprintf(w, "| %d | %s | %d | %d | %d (%.1f%%) | %d | %.2f | %.0f |\n", i/n+1, r.tool, r.received, r.written,
			r.lost(), r.lossPercent(), r.summary.ringFull, r.cpu.Seconds(), nsPer(r.cpu.Nanoseconds(), r.written))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| round | kind | written, compressed / as written | ringcap CPU per written, compressed / as written |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	for i := 0; i+n <= len(rows); i += n {
		base := rows[i]
		for _, r := range rows[i+1 : i+n] {
			if base.err != nil || r.err != nil || base.written == 0 || r.written == 0 {
				fmt.Fprintf(w, "| %d | %s | | |\n", i/n+1, strings.TrimPrefix(r.tool, "ringcap-"))
				continue
			}
			fmt.Fprintf(w, "| %d | %s | %.3f | %.2f |\n", i/n+1, strings.TrimPrefix(r.tool, "ringcap-"),
				float64(r.written)/float64(base.written), nsPer(r.cpu.Nanoseconds(), r.written)/nsPer(base.cpu.Nanoseconds(), base.written))
		}
	}
}
