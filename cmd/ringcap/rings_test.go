package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/cmd/internal/veth"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// The sharded rings end to end: senders pinned to each CPU of a veth
// pair, whose receiving end runs the program on the sending CPU (veth
// hands the frame to that CPU's backlog), so that CPU c's frames go to
// ring c modulo --rings.

// ringsMetrics is where ringcap serves its metrics in the receiving
// namespace, which the test made: the port is free there.
const ringsMetrics = "127.0.0.1:9464"

// Generators pinned to each CPU send at once, in rounds: the rings' frames
// come to one file in timestamp order, each generator's in the order it
// sent them, every selected frame written or counted lost by ring and in
// all, and each ring takes its own CPU's frames.
func TestRingsPinnedGenerators(t *testing.T) {
	bpftest.RequireTool(t, "curl")
	const rings, rounds, perRound = 2, 5, 400
	cpus := ringCPUs(t, rings)
	p := newNetwork(t, veth.Config{MTU: 1500})
	p.ping(t, 56) // the sender knows the receiver's address from here on
	dir := t.TempDir()
	path := filepath.Join(dir, "rings.pcapng")
	r := p.start(t, "-w", path, "-q", "--rings", strconv.Itoa(rings), "--all", "--metrics", ringsMetrics, "udp")
	each, err := bpf.SplitRingSize(bpf.DefaultRingsSize(rings), rings, 256)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(", snaplen 256, %d rings of %s, to ", rings, bpf.FormatSize(uint64(each))); !strings.Contains(r.errors(), want) {
		t.Errorf("the first line does not say %q:\n%s", want, r.errors())
	}

	// Frames of 342 bytes, cut to the snap length: the records the
	// program reserves in place.
	gens := make([]*generator, rings)
	for i, cpu := range cpus {
		gens[i] = &generator{cpu: cpu, port: genPort(i), payload: 300}
	}
	// After each round every generator waits for the others: each
	// round's frames come before the next round's, from every CPU, so
	// the file must interleave the rings.
	barriers := make([]sync.WaitGroup, rounds)
	for i := range barriers {
		barriers[i].Add(len(gens))
	}
	errs := make([]error, len(gens))
	var done sync.WaitGroup
	for i, g := range gens {
		done.Go(func() {
			for round := range rounds {
				if errs[i] == nil {
					errs[i] = g.send(p.Tx, rxAddr, perRound)
				}
				barriers[round].Done()
				barriers[round].Wait()
			}
		})
	}
	done.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	// The program has run on every frame once the rings' counters say
	// so; each ring has its own CPU's frames, all of them.
	var s metricsScrape
	sent := uint64(rounds * perRound)
	if !waitFor(15*time.Second, func() bool {
		s = p.scrapeMetrics(t, ringsMetrics)
		for i := range rings {
			if s.ring(t, i).Selected < sent {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("15s after the generators ended, the rings' selected frames are %d and %d, want %d each", s.ring(t, 0).Selected, s.ring(t, 1).Selected, sent)
	}
	byRing := checkAccounted(t, s, rings)
	for i, c := range byRing {
		if c.Selected != sent || c.Written == 0 {
			t.Errorf("ring %d (CPU %d's): %d selected, %d written; want the %d frames its CPU sent, and some written", i, cpus[i], c.Selected, c.Written, sent)
		}
	}

	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	sum := parseSummary(t, r.errors())
	frames := readSent(t, path, rings)
	if uint64(len(frames)) != sum.written || sum.frames != len(frames) || sum.selected != rings*sent ||
		sum.selected != sum.written+sum.full+sum.resFailure {
		t.Errorf("the file holds %d frames; the summary says %d in the file, %d selected, %d written, %d and %d lost",
			len(frames), sum.frames, sum.selected, sum.written, sum.full, sum.resFailure)
	}
	for i, n := range byGenerator(frames, rings) {
		if uint64(n) != byRing[i].Written {
			t.Errorf("the file holds %d frames from CPU %d, ring %d says %d were written", n, cpus[i], i, byRing[i].Written)
		}
	}
	// Each round holds every generator's frames: a file that merged the
	// rings changes generator at least once within two rounds.
	switches := 0
	for i := 1; i < len(frames); i++ {
		if frames[i].gen != frames[i-1].gen {
			switches++
		}
	}
	if switches < 2 {
		t.Errorf("the file changes from one CPU's frames to the other's %d times; the %d rounds want at least 2", switches, rounds)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 1 {
		t.Errorf("the capture's directory holds %d files, %v; want the one -w names", len(entries), err)
	}
	t.Logf("%d frames, %d changes of CPU; by ring %+v", len(frames), switches, byRing)
}

// With one CPU's ring full, and the rings it spills into as full as it
// may fill them, the other CPU's frames still go in: the last eighth of a
// ring is its own CPUs'. The losses are the flooding CPU's, counted on
// its ring, and the file says where they were.
func TestRingsOneFullOtherWrites(t *testing.T) {
	bpftest.RequireTool(t, "curl")
	bpftest.RequireTool(t, "tshark")
	const rings = 2
	cpus := ringCPUs(t, rings)
	p := newNetwork(t, veth.Config{MTU: 1500})
	p.ping(t, 56)
	path := filepath.Join(t.TempDir(), "full.pcapng")
	// 1MiB over 2 rings: 512KiB each, the last 64KiB of each its own
	// CPU's. Whole frames: the record is the frame's length.
	const total, ringSize, snaplen = 1 << 20, 512 << 10, 1500
	r := p.start(t, "-w", path, "-q", "--rings", strconv.Itoa(rings), "--ring-size", bpf.FormatSize(total),
		"-s", strconv.Itoa(snaplen), "--all", "--metrics", ringsMetrics, "udp")
	if want := ", snaplen 1500, 2 rings of 512KiB, to "; !strings.Contains(r.errors(), want) {
		t.Fatalf("the first line does not say %q:\n%s", want, r.errors())
	}
	hot := &generator{cpu: cpus[0], port: genPort(0), payload: 1400}
	quiet := &generator{cpu: cpus[1], port: genPort(1), payload: 1000}
	hotRecord := int(bpf.Config{SnapLen: uint32(hot.payload + 42)}.RecordSize())
	quietRecord := int(bpf.Config{SnapLen: uint32(quiet.payload + 42)}.RecordSize())
	// Three times what both rings hold: ring 0 fills, ring 1 to seven
	// eighths, and the rest is lost.
	flood := 3 * total / hotRecord
	// Well within the eighth of ring 1 that the flood leaves.
	const quietFrames = 40
	if quietFrames*quietRecord > ringSize/8*3/4 {
		t.Fatalf("%d records of %d bytes do not fit the eighth of a ring with room to spare", quietFrames, quietRecord)
	}

	r.stopped(t)
	if err := hot.send(p.Tx, rxAddr, flood); err != nil {
		t.Fatal(err)
	}
	if err := quiet.send(p.Tx, rxAddr, quietFrames); err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	// The program has run on every frame once the counters say so.
	var s metricsScrape
	if !waitFor(15*time.Second, func() bool {
		s = p.scrapeMetrics(t, ringsMetrics)
		return s.ring(t, 0).Selected >= uint64(flood) && s.ring(t, 1).Selected >= quietFrames
	}) {
		t.Fatalf("the rings' selected frames are %d and %d, want %d and %d", s.ring(t, 0).Selected, s.ring(t, 1).Selected, flood, quietFrames)
	}
	byRing := checkAccounted(t, s, rings)
	hotC, quietC := byRing[0], byRing[1]
	lost := hotC.RingFull + hotC.ReserveFailed
	// Ring 0 alone holds fewer than ringSize/hotRecord records: more
	// written means the flood went on into ring 1.
	if hotC.Selected != uint64(flood) || hotC.RingFull == 0 || hotC.Written <= uint64(ringSize/hotRecord) || hotC.Written > uint64(2*ringSize/hotRecord) {
		t.Errorf("CPU %d's ring: %+v; want the %d frames it sent, more written than one ring of %d holds (%d), fewer than two, the rest lost to full rings",
			hot.cpu, hotC, flood, ringSize, ringSize/hotRecord)
	}
	if quietC != (bpf.Counters{Selected: quietFrames, Written: quietFrames}) {
		t.Errorf("CPU %d's ring: %+v; want its %d frames written, none lost", quiet.cpu, quietC, quietFrames)
	}

	// Once the reader has emptied the rings, a few more from the
	// flooding CPU: the first carries the losses before it.
	inFile := hotC.Written + quietC.Written
	if !waitFor(15*time.Second, func() bool {
		return p.scrapeMetrics(t, ringsMetrics).value(t, "ringcap_file_packets_total{}") == inFile
	}) {
		t.Fatalf("ringcap did not write the %d frames of the rings to the file within 15s", inFile)
	}
	const after = 3
	if err := hot.send(p.Tx, rxAddr, after); err != nil {
		t.Fatal(err)
	}
	if !waitFor(15*time.Second, func() bool { return p.scrapeMetrics(t, ringsMetrics).ring(t, 0).Written == hotC.Written+after }) {
		t.Fatalf("the %d frames sent after the flood were not written", after)
	}
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}

	frames := readSent(t, path, rings)
	if n := byGenerator(frames, rings); n[0] != int(hotC.Written)+after || n[1] != quietFrames {
		t.Errorf("the file holds %d frames from CPU %d and %d from CPU %d; want %d and %d", n[0], hot.cpu, n[1], quiet.cpu,
			hotC.Written+after, quietFrames)
	}
	var quietSeqs []int
	for _, f := range frames {
		if f.gen == 1 {
			quietSeqs = append(quietSeqs, f.seq)
		}
	}
	if want := seqs(quietFrames); !slices.Equal(quietSeqs, want) {
		t.Errorf("CPU %d's frames in the file: %v, want %v", quiet.cpu, quietSeqs, want)
	}
	// Each frame's epb_dropcount: the losses since its CPU's frame
	// before it, all of them on the first frame after the flood.
	drops := pcapngtest.Fields(t, path, "frame.drop_count")
	if len(drops) != len(frames) {
		t.Fatalf("tshark reads %d frames, pcapgo %d", len(drops), len(frames))
	}
	for i, f := range frames {
		want := "0"
		if f.gen == 0 && f.seq == flood {
			want = strconv.FormatUint(lost, 10)
		}
		if drops[i][0] != want {
			t.Errorf("frame %d (CPU %d's #%d): epb_dropcount %s, want %s", i, cpus[f.gen], f.seq, drops[i][0], want)
		}
	}
	if isb := pcapngtest.Read(t, path).Stats.PacketsDropped; isb != lost {
		t.Errorf("the statistics block says %d lost, the program counted %d", isb, lost)
	}
	sum := parseSummary(t, r.errors())
	if sum.full+sum.resFailure != lost || sum.written != hotC.Written+after+quietFrames || uint64(sum.frames) != sum.written {
		t.Errorf("summary %+v; want %d lost, %d written and in the file", sum, lost, hotC.Written+after+quietFrames)
	}
	t.Logf("CPU %d: %d sent, %d written, %d lost; CPU %d: %d sent and written", hot.cpu, flood, hotC.Written, lost, quiet.cpu, quietFrames)
}

// A replay's output is the same with one ring as with the default, one
// per CPU, byte for byte; and the same as the golden files, which one
// ring wrote before there were more.
func TestRingsReplaySameOutput(t *testing.T) {
	bpftest.RequirePrivileges(t)
	rings := map[string][]string{"one ring": {"--rings", "1"}, "default": nil}
	settings := []int{0, 2} // of replaySettings: the default selection, and --all -s 65535
	for _, in := range corpus {
		base := strings.TrimSuffix(in, filepath.Ext(in))
		t.Run(base, func(t *testing.T) {
			// Printed frames.
			want, err := os.ReadFile(filepath.Join(testdata, "golden", base+".txt"))
			if err != nil {
				t.Fatal(err)
			}
			for name, args := range rings {
				r := replayIn(t, append([]string{in}, args...)...)
				if r.code != 0 || r.stdout+r.stderr != string(want) {
					t.Errorf("replay %s, %s: exit %d, and the printed frames differ from %s.txt:\n%s%s", in, name, r.code, base, r.stdout, r.stderr)
				}
			}
			// Written files.
			for _, i := range settings {
				set := replaySettings[i]
				files := map[string][]byte{}
				for name, args := range rings {
					out := filepath.Join(t.TempDir(), "out.pcapng")
					r := replayIn(t, slices.Concat([]string{in, "-w", out}, set.args, args)...)
					if r.code != 0 {
						t.Fatalf("replay %s %v %v: exit %d\n%s", in, set.args, args, r.code, r.stderr)
					}
					if files[name], err = os.ReadFile(out); err != nil {
						t.Fatal(err)
					}
				}
				if !bytes.Equal(files["one ring"], files["default"]) {
					t.Errorf("%s: replayed with one ring (%d bytes) and with the default rings (%d bytes), the files differ",
						set.name, len(files["one ring"]), len(files["default"]))
				}
				golden, err := os.ReadFile(filepath.Join(testdata, "golden", base+"."+set.name+".pcapng"))
				if err != nil {
					t.Fatal(err)
				}
				// The section header describes the machine and the
				// build; TestReplayGolden checks it.
				if !bytes.Equal(afterSectionHeader(t, files["default"]), afterSectionHeader(t, golden)) {
					t.Errorf("%s: the file differs from its golden copy after the section header", set.name)
				}
			}
		})
	}
}

// Values of --rings and --ring-size that cannot work: one line naming the
// fix, exit status 2, and nothing created.
func TestRingsBadValues(t *testing.T) {
	cpus, err := bpf.PossibleCPUs()
	if err != nil {
		t.Fatal(err)
	}
	page := os.Getpagesize()
	size := func(n int) string { return bpf.FormatSize(uint64(n)) }
	anyRings := fmt.Sprintf("give 1 (one ring shared by every CPU) up to %d (one per CPU)", cpus)
	sizes := "a power of two from the page size, " + size(page) + ", to 2GiB"
	// The record of a whole frame, 65535 bytes, with the kernel's and
	// ringcap's headers, fits a ring of 128KiB.
	whole := bpf.Config{SnapLen: 65535}.RecordSize()
	if whole <= 64<<10 || whole >= 128<<10 {
		t.Fatalf("a record of snaplen 65535 takes %d bytes; the case below wants it between 64KiB and 128KiB", whole)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "never.pcapng")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"rings 0", []string{"record", "--rings", "0"},
			"record: --rings 0: " + anyRings},
		{"rings negative", []string{"record", "--rings", "-1"},
			"record: --rings -1: " + anyRings},
		{"rings past the CPUs", []string{"record", "--rings", "1000"},
			fmt.Sprintf("record: --rings 1000: this host has %d CPUs, and a ring without one would take no frames of its own: give 1 to %d", cpus, cpus)},
		{"rings 0, in replay", []string{"replay", "../../testdata/protocols.pcap", "--rings", "0"},
			"replay: --rings 0: " + anyRings},
		{"one ring, not a power of two", []string{"record", "--ring-size", "3MiB", "--rings", "1"},
			"record: ring size 3MiB is not a power of two: use 2MiB or 4MiB (" + sizes + ")"},
		{"one ring under a page", []string{"record", "--ring-size", size(page / 2), "--rings", "1"},
			"record: ring size " + size(page/2) + " is smaller than a page: give " + sizes},
		{"two rings under a page", []string{"record", "--ring-size", size(page / 2), "--rings", "2"},
			fmt.Sprintf("record: ring size %s over 2 rings leaves %s a ring, less than the %s a ring needs (a page, and a record of snaplen 256): give --ring-size %s or more, or fewer --rings",
				size(page/2), size(page/4), size(page), size(2*page))},
		{"rings too small for a record", []string{"record", "--ring-size", "64KiB", "--rings", "2", "--snaplen", "65535"},
			fmt.Sprintf("record: ring size 64KiB over 2 rings leaves 32KiB a ring, less than the %s a ring needs (a page, and a record of snaplen 65535): give --ring-size %s or more, or fewer --rings",
				size(max(page, 128<<10)), size(2*max(page, 128<<10)))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "two rings under a page" && cpus < 2 {
				t.Skip("one CPU: --rings 2 is refused for that")
			}
			args := tt.args
			if args[0] == "record" {
				args = slices.Concat(args, []string{"-i", "lo"})
			}
			r := runRingcap(t, nil, slices.Concat(args, []string{"-w", out})...)
			if r.code != exitUsage {
				t.Errorf("exit code %d, want %d", r.code, exitUsage)
			}
			if want := "ringcap: " + tt.want + "\n"; r.stderr != want {
				t.Errorf("stderr = %q, want the one line %q", r.stderr, want)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
			if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
				t.Errorf("a refused run left %d files in the output's directory (%v)", len(entries), err)
			}
		})
	}
}
