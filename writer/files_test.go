package writer

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/capture/packet"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// fakeClock is the injected clock: tests move it by hand.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

// fakeCounters stand for the program's counters: every call returns the
// next cumulative value, so that each file gets a known difference.
type fakeCounters struct{ received, dropped uint64 }

func (c *fakeCounters) read() ([]Counts, error) {
	return []Counts{{Received: c.received, Dropped: c.dropped}}, nil
}

type harness struct {
	t        *testing.T
	dir      string
	clock    *fakeClock
	counters *fakeCounters
	finished []string
	// inUse holds files by name, as a command or an upload running on
	// them would: Finished returns their Releases.
	inUse    map[string]heldFile
	maxFiles int // Config.MaxFiles
	files    *Files
}

// heldFile is a Release the test decides.
type heldFile struct {
	release Release
	decide  func(Verdict)
}

func newHeldFile() heldFile {
	release, decide := NewRelease()
	return heldFile{release, decide}
}

var start = time.Date(2026, 11, 26, 10, 0, 7, 500_000_000, time.UTC)

func newHarness(t *testing.T, p Policy) *harness {
	t.Helper()
	return newHarnessWith(t, &harness{t: t}, p)
}

// newHarnessWith completes h and creates its files.
func newHarnessWith(t *testing.T, h *harness, p Policy) *harness {
	t.Helper()
	h.dir, h.clock, h.counters = t.TempDir(), &fakeClock{start}, &fakeCounters{}
	var err error
	h.files, err = Create(Config{
		Path:     filepath.Join(h.dir, "cap.pcapng"),
		Options:  Options{Application: "ringcap test", Interfaces: testInterfaces[:1]},
		Policy:   p,
		MaxFiles: h.maxFiles,
		Now:      h.clock.Now,
		Counters: h.counters.read,
		Finished: func(path string) Release {
			h.finished = append(h.finished, path)
			return h.inUse[filepath.Base(path)].release
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// write writes a 100-byte frame at offset d from start, as if the
// capture had seen one more frame and dropped none.
func (h *harness) write(d time.Duration) {
	h.t.Helper()
	h.clock.now = start.Add(d)
	h.counters.received++
	if err := h.files.WritePacket(packet.Packet{Time: h.clock.now, Length: 1500, Data: pcapngtest.Pattern(100, 0)}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) close() {
	h.t.Helper()
	if err := h.files.Close(); err != nil {
		h.t.Fatal(err)
	}
}

// contents reads every capture file in the directory, in name order, and
// returns their names and the packet times in each as offsets from start.
func (h *harness) contents() (names []string, packets [][]time.Duration) {
	h.t.Helper()
	paths, _ := filepath.Glob(filepath.Join(h.dir, "cap*"))
	slices.Sort(paths)
	for _, p := range paths {
		names = append(names, filepath.Base(p))
		var ts []time.Duration
		for _, pkt := range pcapngtest.Read(h.t, p).Packets {
			ts = append(ts, pkt.Time.Sub(start))
		}
		packets = append(packets, ts)
	}
	return names, packets
}

func TestRotation(t *testing.T) {
	s := time.Second
	tests := []struct {
		name    string
		policy  Policy
		writes  []time.Duration
		flushAt []time.Duration // Flush calls with the clock at these offsets, after the writes
		idleAt  []time.Duration // then Idle calls
		files   []string
		packets [][]time.Duration
	}{
		{
			name:    "none",
			policy:  Policy{},
			writes:  []time.Duration{0, s, 100 * s},
			files:   []string{"cap.pcapng"},
			packets: [][]time.Duration{{0, s, 100 * s}},
		},
		{
			name:    "packets",
			policy:  Policy{Packets: 2},
			writes:  []time.Duration{0, s, 2 * s, 3 * s, 4 * s},
			files:   []string{"cap_00001_20261126100007.pcapng", "cap_00002_20261126100009.pcapng", "cap_00003_20261126100011.pcapng"},
			packets: [][]time.Duration{{0, s}, {2 * s, 3 * s}, {4 * s}},
		},
		{
			// The header blocks take 128 bytes and each 100-byte
			// frame's block, with its queue and drop count, 164: two
			// frames bring a file to 456.
			name:    "size",
			policy:  Policy{Size: 456},
			writes:  []time.Duration{0, s, 2 * s, 3 * s, 4 * s},
			files:   []string{"cap_00001_20261126100007.pcapng", "cap_00002_20261126100009.pcapng", "cap_00003_20261126100011.pcapng"},
			packets: [][]time.Duration{{0, s}, {2 * s, 3 * s}, {4 * s}},
		},
		{
			name:    "size, one byte more",
			policy:  Policy{Size: 457},
			writes:  []time.Duration{0, s, 2 * s, 3 * s},
			files:   []string{"cap_00001_20261126100007.pcapng", "cap_00002_20261126100010.pcapng"},
			packets: [][]time.Duration{{0, s, 2 * s}, {3 * s}},
		},
		{
			name:    "every",
			policy:  Policy{Every: 10 * s},
			writes:  []time.Duration{0, 9 * s, 10 * s, 25 * s},
			files:   []string{"cap_00001_20261126100007.pcapng", "cap_00002_20261126100017.pcapng", "cap_00003_20261126100027.pcapng"},
			packets: [][]time.Duration{{0, 9 * s}, {10 * s}, {25 * s}},
		},
		{
			// Started at 10:00:07.5: boundaries at :10, :20, :30.
			name:    "every aligned",
			policy:  Policy{Every: 10 * s, Align: true},
			writes:  []time.Duration{0, 2 * s, 2500 * time.Millisecond, 12 * s},
			idleAt:  []time.Duration{12400 * time.Millisecond, 12500 * time.Millisecond},
			files:   []string{"cap_00001_20261126100007.pcapng", "cap_00002_20261126100010.pcapng", "cap_00003_20261126100020.pcapng"},
			packets: [][]time.Duration{{0, 2 * s}, {2500 * time.Millisecond, 12 * s}, {}},
		},
		{
			// A packet long after the boundary starts its file on the
			// last boundary before it; the silence stays in the file
			// before, and no empty files are left for it.
			name:    "every, after a silence",
			policy:  Policy{Every: 10 * s},
			writes:  []time.Duration{0, 35 * s, 36 * s, 47 * s},
			files:   []string{"cap_00001_20261126100007.pcapng", "cap_00002_20261126100037.pcapng", "cap_00003_20261126100047.pcapng"},
			packets: [][]time.Duration{{0}, {35 * s, 36 * s}, {47 * s}},
		},
		{
			// Flush never rotates: frames may still wait in the ring.
			name:    "every, flushed late",
			policy:  Policy{Every: 10 * s},
			writes:  []time.Duration{0},
			flushAt: []time.Duration{30 * s},
			files:   []string{"cap_00001_20261126100007.pcapng"},
			packets: [][]time.Duration{{0}},
		},
		{
			// With no packet coming, Idle ends a file that is due.
			name:    "every, idle",
			policy:  Policy{Every: 10 * s},
			writes:  []time.Duration{0},
			idleAt:  []time.Duration{5 * s, 10 * s},
			files:   []string{"cap_00001_20261126100007.pcapng", "cap_00002_20261126100017.pcapng"},
			packets: [][]time.Duration{{0}, {}},
		},
		{
			// Each file's age counts from its own start.
			name:    "combined: packets or time, whichever comes first",
			policy:  Policy{Every: 10 * s, Packets: 3},
			writes:  []time.Duration{0, s, 2 * s, 3 * s, 12 * s, 14 * s},
			files:   []string{"cap_00001_20261126100007.pcapng", "cap_00002_20261126100010.pcapng", "cap_00003_20261126100020.pcapng"},
			packets: [][]time.Duration{{0, s, 2 * s}, {3 * s, 12 * s}, {14 * s}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.policy)
			for _, d := range tt.writes {
				h.write(d)
			}
			for _, d := range tt.flushAt {
				h.clock.now = start.Add(d)
				if err := h.files.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			for _, d := range tt.idleAt {
				h.clock.now = start.Add(d)
				if err := h.files.Idle(); err != nil {
					t.Fatal(err)
				}
			}
			h.close()
			names, packets := h.contents()
			if !slices.Equal(names, tt.files) {
				t.Fatalf("files %q, want %q", names, tt.files)
			}
			for i := range packets {
				if !slices.Equal(packets[i], tt.packets[i]) {
					t.Errorf("%s holds packets at %v, want %v", names[i], packets[i], tt.packets[i])
				}
			}
			var paths []string
			for _, n := range names {
				paths = append(paths, filepath.Join(h.dir, n))
			}
			if !slices.Equal(h.finished, paths) {
				t.Errorf("finished files reported %q, want each file once, in order: %q", h.finished, paths)
			}
		})
	}
}

// Each file's Interface Statistics Block covers its own interval, and
// intervals meet without a gap.
func TestRotationStatistics(t *testing.T) {
	h := newHarness(t, Policy{Packets: 2})
	for i := range 5 {
		h.write(time.Duration(i) * time.Second)
		h.counters.received += 10 // frames seen but not selected
		h.counters.dropped += uint64(i)
	}
	h.close()
	names, _ := h.contents()
	var recv, drop uint64
	var prevEnd time.Time
	for i, n := range names {
		st := pcapngtest.Read(t, filepath.Join(h.dir, n)).Stats
		if i > 0 && !st.StartTime.Equal(prevEnd) {
			t.Errorf("%s starts at %v, the file before ended at %v", n, st.StartTime, prevEnd)
		}
		if !st.EndTime.After(st.StartTime) && i < len(names)-1 {
			t.Errorf("%s: end %v is not after start %v", n, st.EndTime, st.StartTime)
		}
		prevEnd = st.EndTime
		recv += st.PacketsReceived
		drop += st.PacketsDropped
	}
	if recv != h.counters.received || drop != h.counters.dropped {
		t.Errorf("statistics add up to %d received, %d dropped; counters say %d, %d",
			recv, drop, h.counters.received, h.counters.dropped)
	}
	// The counters are read when the third frame starts the second
	// file, after the kernel counted that frame: it is counted in the
	// first file's interval, as it arrived before the rotation.
	first := pcapngtest.Read(t, filepath.Join(h.dir, names[0])).Stats
	if first.PacketsReceived != 1+10+1+10+1 || first.PacketsDropped != 0+1 {
		t.Errorf("first file: %d received, %d dropped; want 23 and 1", first.PacketsReceived, first.PacketsDropped)
	}
	bpftest.RequireTool(t, "capinfos")
	if info := pcapngtest.Run(t, "capinfos", filepath.Join(h.dir, names[0])); !strings.Contains(info, "Number of stat entries = 1") {
		t.Errorf("capinfos does not see the statistics block:\n%s", info)
	}
}

func TestMaxFilesDeletesOnlyItsOwn(t *testing.T) {
	h := newHarnessWith(t, &harness{t: t, maxFiles: 3}, Policy{Packets: 1})
	// Files that look like ringcap's but are not this capture's.
	foreign := []string{"cap_00000_20261126100000.pcapng", "cap_00001_20200101000000.pcapng", "other.pcapng"}
	for _, n := range foreign {
		if err := os.WriteFile(filepath.Join(h.dir, n), []byte("not ours"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 {
		h.write(time.Duration(i) * time.Second)
	}
	h.close()
	names, _ := filepathBases(t, h.dir)
	want := append(slices.Clone(foreign), "cap_00004_20261126100010.pcapng",
		"cap_00005_20261126100011.pcapng", "cap_00006_20261126100012.pcapng")
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("directory holds %q, want %q", names, want)
	}
	if len(h.finished) != 6 {
		t.Errorf("%d files reported finished, want 6", len(h.finished))
	}
}

// A file that --max-files would delete while its --post-rotate command
// or upload still runs is deleted only once it is released, and one whose
// upload did not end is kept. A command that removed the file itself
// (gzip) is no error.
func TestMaxFilesWaitsForRelease(t *testing.T) {
	name := func(seq, sec int) string {
		return fmt.Sprintf("cap_%05d_202611261000%02d.pcapng", seq, sec)
	}
	h := &harness{t: t, inUse: make(map[string]heldFile), maxFiles: 2}
	for seq := 1; seq <= 5; seq++ {
		h.inUse[name(seq, 6+seq)] = newHeldFile()
	}
	h = newHarnessWith(t, h, Policy{Packets: 1})
	for i := range 5 {
		h.write(time.Duration(i) * time.Second)
	}
	// Files 1 to 3 are past the limit, but in use.
	names, _ := filepathBases(t, h.dir)
	if want := []string{name(1, 7), name(2, 8), name(3, 9), name(4, 10), name(5, 11)}; !slices.Equal(names, want) {
		t.Fatalf("while their commands run, the directory holds %q, want %q", names, want)
	}
	// The command on file 1 removes it, as gzip does.
	if err := os.Remove(filepath.Join(h.dir, name(1, 7))); err != nil {
		t.Fatal(err)
	}
	h.inUse[name(1, 7)].decide(Deletable)
	h.inUse[name(2, 8)].decide(Keep) // not sent
	h.inUse[name(3, 9)].decide(Keep) // not sent either, and the first verdict stands
	h.inUse[name(3, 9)].decide(Deletable)
	h.inUse[name(4, 10)].decide(Deletable)
	h.inUse[name(5, 11)].decide(Deletable)
	h.close()
	names, _ = filepathBases(t, h.dir)
	if want := []string{name(2, 8), name(3, 9), name(4, 10), name(5, 11)}; !slices.Equal(names, want) {
		t.Errorf("after the commands ended, the directory holds %q, want %q", names, want)
	}
}

// filepathBases names what dir holds, but the number file of cap.pcapng
// (TestSeqFile).
func filepathBases(t *testing.T, dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.Name() != ".cap.ringcap-seq" {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func TestFilesCreate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.pcapng")
	cfg := Config{Path: path, Options: Options{Interfaces: testInterfaces}}
	files, err := Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("stat: %v, %v; want mode 0600", st, err)
	}
	want := "output file " + path + " exists"
	if err := cfg.Check(); err == nil || err.Error() != want {
		t.Errorf("Check: %v, want %q", err, want)
	}
	if _, err := Create(cfg); err == nil || err.Error() != want {
		t.Errorf("Create: %v, want %q", err, want)
	}
	cfg.Overwrite, cfg.FileMode = true, 0o640
	if files, err := Create(cfg); err != nil {
		t.Errorf("Create with Overwrite: %v", err)
	} else {
		files.Close()
	}

	rotating := Config{Path: filepath.Join(dir, "r.pcapng"), Options: cfg.Options, Policy: Policy{Packets: 1}, FileMode: 0o640}
	files, err = Create(rotating)
	if err != nil {
		t.Fatal(err)
	}
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(files.Current()); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("stat %s: %v, %v; want mode 0640", files.Current(), st, err)
	}

	for _, bad := range []Config{
		{Path: "-", Policy: Policy{Size: 1 << 20}},
		{Path: path + "2", MaxFiles: 3},
	} {
		if err := bad.Check(); err == nil {
			t.Errorf("Check(%+v) accepted it", bad)
		}
	}
}

// Rotation reuses the write buffer: a new file does not cost a new one.
func TestRotationReusesBuffer(t *testing.T) {
	const files, bufSize = 20, DefaultBufferSize
	h := newHarness(t, Policy{Packets: 1})
	h.write(0) // the first file has its buffer
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 1; i <= files; i++ {
		h.write(time.Duration(i) * time.Second)
	}
	runtime.ReadMemStats(&after)
	h.close()
	if perFile := (after.TotalAlloc - before.TotalAlloc) / files; perFile > bufSize/8 {
		t.Errorf("each rotation allocated %d bytes, want well under the %d-byte buffer", perFile, bufSize)
	}
}

// An interface added while the files are written comes after the others
// in the open file and in every file after it, with statistics of its
// own; counters of an interface no file holds yet are left out.
func TestAddInterface(t *testing.T) {
	dir := t.TempDir()
	counts := []Counts{{Received: 1}}
	files, err := Create(Config{
		Path:     filepath.Join(dir, "add.pcapng"),
		Options:  Options{Application: "ringcap test", Interfaces: testInterfaces[:1]},
		Policy:   Policy{Packets: 2},
		Now:      func() time.Time { return start },
		Counters: func() ([]Counts, error) { return slices.Clone(counts), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	write := func(iface int) {
		t.Helper()
		if err := files.WritePacket(packet.Packet{Interface: iface, Time: start, Length: 1500, Data: pcapngtest.Pattern(100, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	// The capture counts a third interface before the second is added.
	counts = []Counts{{Received: 1}, {Received: 5}, {Received: 7}}
	if err := files.AddInterface(testInterfaces[1]); err != nil {
		t.Fatal(err)
	}
	write(1)
	write(1) // the second file
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "add_*"))
	slices.Sort(paths)
	if len(paths) != 2 {
		t.Fatalf("%d files, want 2", len(paths))
	}
	for _, p := range paths {
		rows := pcapngtest.Fields(t, p, "frame.interface_name")
		for _, row := range rows {
			if row[0] != testInterfaces[1].Name && row[0] != testInterfaces[0].Name {
				t.Errorf("%s: a frame on interface %q", filepath.Base(p), row[0])
			}
		}
		bpftest.RequireTool(t, "capinfos")
		info := pcapngtest.Run(t, "capinfos", "-M", p)
		if !strings.Contains(info, "Number of interfaces in file: 2") {
			t.Errorf("%s: capinfos does not see both interfaces:\n%s", filepath.Base(p), info)
		}
	}
	if rows := pcapngtest.Fields(t, paths[1], "frame.interface_name"); len(rows) != 1 || rows[0][0] != testInterfaces[1].Name {
		t.Errorf("second file's frames on %v, want one on %s", rows, testInterfaces[1].Name)
	}
}

// Earlier finds the files named as a rotating capture names them, oldest
// first by the time in their names, then by number; nothing else.
func TestEarlier(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{
		"cap_00001_20261126100005.pcapng", // a later run
		"cap_00010_20261126100001.pcapng",
		"cap_00002_20261126100001.pcapng",
		"cap_100000_20261126100001.pcapng",
		"cap.pcapng", "other_00001_20261126100001.pcapng", "cap_1_20261126100001.pcapng",
		"cap_00003_2026.pcapng", "cap_00003_20261126100001.pcap", "cap_0000x_20261126100001.pcapng",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "cap_00004_20261126100001.pcapng"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		policy Policy
		want   []string
	}{
		{Policy{}, nil},
		{Policy{Packets: 10}, []string{"cap_00002_20261126100001.pcapng", "cap_00010_20261126100001.pcapng",
			"cap_100000_20261126100001.pcapng", "cap_00001_20261126100005.pcapng"}},
	} {
		got, err := Config{Path: filepath.Join(dir, "cap.pcapng"), Policy: tc.policy}.Earlier()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range got {
			names = append(names, filepath.Base(p))
		}
		if !slices.Equal(names, tc.want) {
			t.Errorf("%+v: Earlier = %q, want %q", tc.policy, names, tc.want)
		}
	}
	if got, err := (Config{Path: filepath.Join(dir, "nosuch", "cap.pcapng"), Policy: Policy{Packets: 1}}).Earlier(); err != nil || got != nil {
		t.Errorf("in a directory that does not exist: %v, %v", got, err)
	}
}

// A rotating capture numbers its files on from an earlier run's: one
// started again within the second takes no name, and names sort in time.
func TestNumbersGoOn(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cap_00007_20261126100005.pcapng"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := Create(Config{Path: filepath.Join(dir, "cap.pcapng"), Options: Options{Interfaces: testInterfaces[:1]},
		Policy: Policy{Packets: 1}, Now: func() time.Time { return start }})
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	if got, want := filepath.Base(files.Current()), "cap_00008_20261126100007.pcapng"; got != want {
		t.Errorf("first file %s, want %s", got, want)
	}
}

// -W counts the files an earlier run left under the same name and deletes
// them first, each once Adopt's Release lets it go (one it keeps stays),
// and nothing else; numbers go on from the last one the number file keeps.
func TestMaxFilesAdoptsEarlier(t *testing.T) {
	dir := t.TempDir()
	earlier := []string{"cap_00001_20261126090000.pcapng", "cap_00002_20261126090001.pcapng", "cap_00003_20261126090002.pcapng"}
	for _, n := range append(slices.Clone(earlier), "other.pcapng") {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("earlier"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keep, decide := NewRelease()
	decide(Keep) // its upload did not end
	var adopted []string
	clock := &fakeClock{start}
	files, err := Create(Config{Path: filepath.Join(dir, "cap.pcapng"), Options: Options{Interfaces: testInterfaces[:1]},
		Policy: Policy{Packets: 1}, MaxFiles: 2, Now: clock.Now,
		Adopt: func(path string) Release {
			adopted = append(adopted, filepath.Base(path))
			if filepath.Base(path) == earlier[1] {
				return keep
			}
			return Release{}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(adopted, earlier) {
		t.Errorf("adopted %q, want %q", adopted, earlier)
	}
	for i := range 2 {
		clock.now = start.Add(time.Duration(i) * time.Second)
		if err := files.WritePacket(packet.Packet{Time: clock.now, Length: 100, Data: make([]byte, 100)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepathBases(t, dir)
	want := []string{earlier[1], "cap_00004_20261126100007.pcapng", "cap_00005_20261126100008.pcapng", "other.pcapng"}
	if !slices.Equal(names, want) {
		t.Errorf("directory holds %q, want %q", names, want)
	}

	// With every file gone, as --upload-delete leaves the directory, the
	// next run's numbers still go on.
	for _, n := range names {
		os.Remove(filepath.Join(dir, n))
	}
	files, err = Create(Config{Path: filepath.Join(dir, "cap.pcapng"), Options: Options{Interfaces: testInterfaces[:1]},
		Policy: Policy{Packets: 1}, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	if got := filepath.Base(files.Current()); !strings.HasPrefix(got, "cap_00006_") {
		t.Errorf("after the files are gone, the next is %s, want number 6", got)
	}
}
