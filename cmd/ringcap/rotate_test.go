package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// flood sends count echo requests of payload bytes from tx to rx as fast
// as the replies come back.
func (p *vethPair) flood(t *testing.T, count, payload int) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", p.Tx, "ping", "-f", "-q", "-l", "16",
		"-c", strconv.Itoa(count), "-s", strconv.Itoa(payload), rxAddr).CombinedOutput()
	if err != nil {
		t.Fatalf("ping -f: %v\n%s", err, out)
	}
}

// summary is the counters ringcap prints when it ends.
type summary struct {
	frames, files                             int
	seen, selected, written, full, resFailure uint64
}

var (
	framesLine   = regexp.MustCompile(`ringcap: (\d+) frames written to (?:(\d+) files, the last )?`)
	countersLine = regexp.MustCompile(`ringcap: (\d+) seen, (\d+) selected, (\d+) written to the ring, (\d+) dropped because the ring was full, (\d+) reserve failures`)
)

func parseSummary(t *testing.T, stderr string) summary {
	t.Helper()
	f, c := framesLine.FindStringSubmatch(stderr), countersLine.FindStringSubmatch(stderr)
	if f == nil || c == nil {
		t.Fatalf("no summary in:\n%s", stderr)
	}
	n := func(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }
	s := summary{frames: int(n(f[1])), files: 1, seen: n(c[1]), selected: n(c[2]), written: n(c[3]), full: n(c[4]), resFailure: n(c[5])}
	if f[2] != "" {
		s.files = int(n(f[2]))
	}
	return s
}

// packetKey identifies an echo request: its ICMP identifier and sequence
// (after Ethernet 14 and IPv4 20 bytes, at 4-8) and its time.
func packetKey(p pcapngtest.Packet) string {
	return fmt.Sprintf("%x/%d", p.Data[34+4:34+8], p.Time.UnixNano())
}

func rotatedFiles(t *testing.T, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "rot_*.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(paths)
	return paths
}

// TestRotateLongRun floods the receiver through many rotations and checks
// that the files together hold every frame written exactly once, in order,
// with statistics that add up to the program's counters. Set
// RINGCAP_LONG_RUN_PACKETS for a longer run.
func TestRotateLongRun(t *testing.T) {
	bpftest.RequireTool(t, "mergecap")
	packets := 120000
	if s := os.Getenv("RINGCAP_LONG_RUN_PACKETS"); s != "" {
		packets, _ = strconv.Atoi(s)
	}
	p := newVethPair(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "finished.log")
	r := p.start(t, "-w", filepath.Join(dir, "rot.pcapng"), "-q",
		"--rotate-packets", "5000", "--rotate-size", "1MiB", "--rotate-every", "1s",
		"--post-rotate", "echo >>"+log)
	for sent := 0; sent < packets; sent += 50000 {
		p.flood(t, min(50000, packets-sent), 1600)
	}
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	sum := parseSummary(t, r.errors())
	paths := rotatedFiles(t, dir)
	if len(paths) != sum.files || len(paths) < 10 {
		t.Fatalf("%d files on disk, summary says %d; want at least 10", len(paths), sum.files)
	}

	seen := make(map[string]bool)
	var total int
	var recv, drop uint64
	var last, prevEnd time.Time
	for i, path := range paths {
		pcapngtest.Run(t, "capinfos", path)
		cf := pcapngtest.Read(t, path)
		for j, p := range cf.Packets {
			if p.Time.Before(last) {
				t.Fatalf("%s: packet %d at %v comes before the previous one at %v", path, j, p.Time, last)
			}
			last = p.Time
			if key := packetKey(p); seen[key] {
				t.Fatalf("%s: packet %d was written twice", path, j)
			} else {
				seen[key] = true
			}
		}
		if n := len(cf.Packets); n > 0 && (cf.Packets[0].Time.Before(cf.Stats.StartTime) || cf.Packets[n-1].Time.After(cf.Stats.EndTime)) {
			t.Errorf("%s: packets from %v to %v fall outside its interval %v-%v", path,
				cf.Packets[0].Time, cf.Packets[n-1].Time, cf.Stats.StartTime, cf.Stats.EndTime)
		}
		if i > 0 && !cf.Stats.StartTime.Equal(prevEnd) {
			t.Errorf("%s starts at %v, the file before ended at %v", path, cf.Stats.StartTime, prevEnd)
		}
		prevEnd = cf.Stats.EndTime
		total += len(cf.Packets)
		recv += cf.Stats.PacketsReceived
		drop += cf.Stats.PacketsDropped
	}
	if uint64(total) != sum.written || total != sum.frames {
		t.Errorf("files hold %d frames; the program wrote %d into the ring, ringcap says it wrote %d", total, sum.written, sum.frames)
	}
	if recv != sum.seen || drop != sum.full+sum.resFailure {
		t.Errorf("statistics blocks add up to %d received, %d dropped; the program counted %d seen, %d dropped",
			recv, drop, sum.seen, sum.full+sum.resFailure)
	}
	if sum.selected < uint64(packets) {
		t.Errorf("%d selected, fewer than the %d echo requests sent", sum.selected, packets)
	}

	merged := filepath.Join(t.TempDir(), "merged.pcapng")
	pcapngtest.Run(t, "mergecap", append([]string{"-w", merged}, paths...)...)
	if n := len(pcapngtest.Read(t, merged).Packets); n != total {
		t.Errorf("mergecap's file holds %d frames, the files %d", n, total)
	}

	// Every finished file reported to --post-rotate, once each.
	checkPostRotateLog(t, log, paths)
	t.Logf("%d echo requests, %d files, %d frames written, %d dropped", packets, len(paths), total, drop)
}

// checkPostRotateLog checks that the --post-rotate log lists exactly paths.
// The commands run in the background, but ringcap waits for them before it
// exits.
func checkPostRotateLog(t *testing.T, log string, paths []string) {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatalf("--post-rotate never ran: %v", err)
	}
	got := strings.Fields(string(b))
	slices.Sort(got)
	if !slices.Equal(got, paths) {
		t.Errorf("--post-rotate ran on %d paths, want each of the %d files once:\ngot  %q\nwant %q", len(got), len(paths), got, paths)
	}
}

func TestPostRotateFailureDoesNotStopCapture(t *testing.T) {
	p := newVethPair(t)
	dir := t.TempDir()
	r := p.start(t, "-w", filepath.Join(dir, "rot.pcapng"), "-q", "--rotate-packets", "2", "--post-rotate", "exit 3 #")
	for range 5 {
		p.ping(t, 2000)
	}
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	if n := strings.Count(r.errors(), "--post-rotate \"exit 3 #\" on "); n != 3 {
		t.Errorf("%d failures of --post-rotate reported, want one per file (3):\n%s", n, r.errors())
	}
	if sum := parseSummary(t, r.errors()); sum.frames != 5 || sum.files != 3 {
		t.Errorf("%d frames in %d files, want 5 in 3", sum.frames, sum.files)
	}
}

// --max-files deletes a file only once its --post-rotate command has
// ended: the command sees the whole file. A command that removes the file
// itself (gzip) does not make ringcap fail.
func TestPostRotateWithMaxFiles(t *testing.T) {
	for _, tt := range []struct {
		name    string
		command string
		left    string // glob of the files left in the capture's directory
	}{
		{"slow copy", "sleep 0.5; cp -t COPIES", "rot_*.pcapng"},
		{"gzip", "gzip", "rot_*.pcapng.gz"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newVethPair(t)
			dir, copies := t.TempDir(), t.TempDir()
			r := p.start(t, "-w", filepath.Join(dir, "rot.pcapng"), "-q", "--rotate-packets", "2", "--max-files", "2",
				"--post-rotate", strings.ReplaceAll(tt.command, "COPIES", copies))
			for range 8 {
				p.ping(t, 2000)
			}
			if code := r.stop(t, os.Interrupt); code != 0 {
				t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
			}
			if strings.Contains(r.errors(), "--post-rotate") || strings.Contains(r.errors(), "delete") {
				t.Errorf("ringcap reports a failure:\n%s", r.errors())
			}
			if sum := parseSummary(t, r.errors()); sum.frames != 8 || sum.files != 4 {
				t.Errorf("%d frames in %d files, want 8 in 4", sum.frames, sum.files)
			}
			left, _ := filepath.Glob(filepath.Join(dir, tt.left))
			if tt.name == "gzip" {
				// gzip replaced every file; --max-files deletes none of
				// what it made.
				if len(left) != 4 {
					t.Errorf("%d gzipped files left, want 4: %q", len(left), left)
				}
				return
			}
			if len(left) != 2 {
				t.Errorf("%d files left, want the last 2 (--max-files 2): %q", len(left), left)
			}
			copied, _ := filepath.Glob(filepath.Join(copies, "rot_*.pcapng"))
			if len(copied) != 4 {
				t.Fatalf("the command copied %d files, want all 4: %q", len(copied), copied)
			}
			for _, path := range copied {
				if n, _ := pcapngtest.Count(t, path, false); n != 2 {
					t.Errorf("%s holds %d frames, want 2", path, n)
				}
			}
		})
	}
}

// A full disk stops the capture with a clear message; every file left,
// the one being written included, reads without a warning. ext4 is
// written with O_DIRECT, tmpfs through the page cache, as the first line
// says.
func TestDiskFull(t *testing.T) {
	for _, tc := range []struct{ fs, mode string }{
		{"ext4", "(direct I/O)"},
		{"tmpfs", "(buffered: tmpfs does not take O_DIRECT)"},
	} {
		t.Run(tc.fs, func(t *testing.T) {
			p := newVethPair(t)
			dir := pcapngtest.Mount(t, tc.fs, 2<<20)
			r := p.start(t, "-w", filepath.Join(dir, "rot.pcapng"), "-q", "-s", "1500", "--rotate-size", "200KiB")
			// 2000 frames of 1514 captured bytes: 3 MB, more than the
			// space.
			for range 4 {
				p.flood(t, 500, 1600)
			}
			code := r.wait(t)
			if code != exitRuntime {
				t.Fatalf("exit code %d with a full disk, want %d:\n%s", code, exitRuntime, r.errors())
			}
			if first, _, _ := strings.Cut(r.errors(), "\n"); !strings.HasSuffix(first, tc.mode) {
				t.Errorf("the first line does not end in %q: %s", tc.mode, first)
			}
			if !strings.Contains(r.errors(), "no space left on device") {
				t.Errorf("stderr does not name the cause:\n%s", r.errors())
			}
			paths := rotatedFiles(t, dir)
			if len(paths) < 2 {
				t.Fatalf("%d files, want several", len(paths))
			}
			var total int
			for _, path := range paths {
				rows := pcapngtest.Fields(t, path, "frame.len")
				total += len(rows)
			}
			if sum := parseSummary(t, r.errors()); total == 0 || sum.frames != total {
				t.Errorf("files hold %d frames, ringcap says %d were written", total, sum.frames)
			}
			p.noXDPLeft(t)
		})
	}
}

// Killed in the middle of writing, ringcap leaves files that tshark reads,
// at worst without the block it was writing. Written with O_DIRECT, which
// ext4 takes: full buffers end in a padding block, not in half a packet.
func TestSIGKILLMidWrite(t *testing.T) {
	p := newVethPair(t)
	dir := pcapngtest.Mount(t, "ext4", 256<<20)
	// Files larger than the 4 MiB write buffers: direct writes and
	// cached tails both happen in each.
	r := p.start(t, "-w", filepath.Join(dir, "rot.pcapng"), "-q", "-s", "4096", "--rotate-size", "10MiB")
	done := make(chan struct{})
	go func() {
		defer close(done)
		exec.Command("ip", "netns", "exec", p.Tx, "ping", "-f", "-q", "-c", "60000", "-s", "3000", rxAddr).Run()
	}()
	// Kill it once it is writing its third file: two are complete.
	if !waitFor(15*time.Second, func() bool { return len(rotatedFiles(t, dir)) >= 3 }) {
		t.Fatalf("ringcap wrote %d files in 15s, want 3 before killing it", len(rotatedFiles(t, dir)))
	}
	r.stop(t, syscall.SIGKILL)
	<-done
	if first, _, _ := strings.Cut(r.errors(), "\n"); !strings.HasSuffix(first, "(direct I/O)") {
		t.Errorf("the first line does not say direct I/O: %s", first)
	}
	paths := rotatedFiles(t, dir)
	if len(paths) < 2 {
		t.Fatalf("%d files, want several", len(paths))
	}
	var total int
	for i, path := range paths {
		last := i == len(paths)-1
		n, cut := pcapngtest.Count(t, path, last)
		if cut && !last {
			t.Errorf("%s is cut short, but only the last file may be", path)
		}
		total += n
	}
	if total == 0 {
		t.Error("no frame survived")
	}
	p.noXDPLeft(t)
}

// Frames lost to a full ring show where they were lost: each frame's
// epb_dropcount is its interface's losses since the frame before it,
// across rotated files, and the counts add up to the program's, as the
// files' statistics blocks do.
func TestDropCountInFiles(t *testing.T) {
	bpftest.RequireTool(t, "taskset")
	p := newVethPair(t)
	dir := t.TempDir()
	page := os.Getpagesize()
	// One ring of a page: the program counts losses per CPU, as before
	// there were more rings.
	r := p.start(t, "-w", filepath.Join(dir, "rot.pcapng"), "-q", "-s", "64", "--ring-size", strconv.Itoa(page), "--rings", "1", "--rotate-packets", "10")
	// Pings from one CPU: veth receives them there, and the program
	// counts losses per CPU.
	ping := func(n int) {
		t.Helper()
		out, err := exec.Command("ip", "netns", "exec", p.Tx, "taskset", "-c", strconv.Itoa(allowedCPUs(t)[0]),
			"ping", "-q", "-c", strconv.Itoa(n), "-i", "0.002", "-W", "2", "-s", "2000", rxAddr).CombinedOutput()
		if err != nil {
			t.Fatalf("ping: %v\n%s", err, out)
		}
	}
	// With ringcap's reader stopped, the ring fills: fits records, then
	// the rest are lost.
	fits := (page - 1) / (8 + bpf.EventHeaderSize + 64)
	const lost = 9
	r.stopped(t)
	ping(fits + lost)
	if err := r.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Once the reader has emptied the ring, three more.
	if !waitFor(10*time.Second, func() bool { return pcapngtest.CountFiles(t, rotatedFiles(t, dir), true) == fits }) {
		t.Fatalf("ringcap wrote %d frames after it went on, want the %d the ring held", pcapngtest.CountFiles(t, rotatedFiles(t, dir), true), fits)
	}
	ping(3)
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}

	var got []string
	var isbDrops uint64
	for _, path := range rotatedFiles(t, dir) {
		for _, row := range pcapngtest.Fields(t, path, "frame.drop_count") {
			got = append(got, row[0])
		}
		isbDrops += pcapngtest.Read(t, path).Stats.PacketsDropped
	}
	var want []string
	for i := range fits + 3 {
		n := 0
		if i == fits {
			n = lost // the first frame after the losses
		}
		want = append(want, strconv.Itoa(n))
	}
	if !slices.Equal(got, want) {
		t.Errorf("drop counts in the files %v, want %v", got, want)
	}
	sum := parseSummary(t, r.errors())
	if sum.full+sum.resFailure != lost || isbDrops != lost {
		t.Errorf("the program counted %d lost, the statistics blocks %d; want %d", sum.full+sum.resFailure, isbDrops, lost)
	}
}
