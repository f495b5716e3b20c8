package writer

import (
	"os"
	"path/filepath"
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
	compress Compression
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
	if h.dir == "" {
		h.dir = t.TempDir()
	}
	h.clock, h.counters = &fakeClock{start}, &fakeCounters{}
	var err error
	h.files, err = Create(Config{
		Path:     filepath.Join(h.dir, "cap.pcapng"),
		Options:  Options{Application: "ringcap test", Interfaces: testInterfaces[:1]},
		Policy:   p,
		MaxFiles: h.maxFiles,
		Compress: h.compress,
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
