package writer

import (
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

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
