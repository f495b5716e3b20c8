package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/bpf/frames"
)

const xdpPass = 2 // XDP_PASS

var (
	dot1q = layers.EthernetTypeDot1Q
	qinq  = layers.EthernetTypeQinQ
)

type event struct {
	ringcapEvent
	data []byte
}

func load(t *testing.T, cfg Config) *Objects {
	t.Helper()
	objs := loadNow(t, cfg)
	t.Cleanup(func() { objs.Close() })
	return objs
}

// loadNow is load, leaving Close to the caller.
func loadNow(t *testing.T, cfg Config) *Objects {
	t.Helper()
	bpftest.RequirePrivileges(t)
	if cfg.RingSize == 0 {
		cfg.RingSize = 1 << 20
	}
	cfg.Slots = 1
	cfg.Perfmon = true
	objs, err := Load(cfg)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	mapLoopback(t, objs)
	return objs
}

// loopbackIndex is the index of every namespace's loopback interface,
// which a test run without a context runs as.
const loopbackIndex = 1

// mapLoopback makes the frames of test runs without a context count as
// slot 0's, in either direction.
func mapLoopback(tb testing.TB, objs *Objects) {
	tb.Helper()
	for _, outbound := range []bool{false, true} {
		if err := objs.SetSlot(loopbackIndex, outbound, 0); err != nil {
			objs.Close()
			tb.Fatal(err)
		}
	}
}

// testBuild is one of the program's builds, as the tests run it.
type testBuild struct {
	name  string
	build Build
	// maxFrame is the longest frame a test run hands it: the
	// single-buffer build never sees a multi-buffer frame, and a tc
	// test run takes a page at most. 0: any.
	maxFrame int
}

// builds are the program's builds; tests run their frames through each
// that takes them.
var builds = []testBuild{
	{"multi-buffer", XDP, 0},
	{"linear", XDPLinear, 3000},
	{"tc", TC, 3000},
}

// takes says whether a test run hands b a frame of n bytes.
func (b testBuild) takes(n int) bool { return b.maxFrame == 0 || n <= b.maxFrame }

// prog loads an instance of the build, closed with the test.
func (b testBuild) prog(t testing.TB, o *Objects) *ebpf.Program {
	t.Helper()
	p, err := o.Program(Instance{Build: b.build})
	if err != nil {
		t.Fatalf("load %s build: %v", b.name, err)
	}
	return p
}

// run feeds frame to prog times times through BPF_PROG_TEST_RUN.
func run(t *testing.T, prog *ebpf.Program, frame []byte, times int) {
	t.Helper()
	if err := bpftest.RunTimes(prog, frame, times); err != nil {
		t.Fatal(err)
	}
}

// drain reads every record in the rings without waiting, ring after
// ring.
func drain(t *testing.T, objs *Objects) []event {
	t.Helper()
	var evs []event
	for _, ring := range objs.Rings {
		rd, err := ringbuf.NewReader(ring)
		if err != nil {
			t.Fatal(err)
		}
		readNow(t, rd, func(raw []byte) {
			var ev event
			if _, err := binary.Decode(raw, binary.NativeEndian, &ev.ringcapEvent); err != nil {
				t.Fatal(err)
			}
			ev.data = raw[EventHeaderSize:]
			evs = append(evs, ev)
		})
		rd.Close()
	}
	return evs
}

// readNow hands each record in the ring to each, without waiting for
// more. A record's bytes stay valid after each returns.
func readNow(tb testing.TB, rd *ringbuf.Reader, each func(raw []byte)) {
	tb.Helper()
	rd.SetDeadline(time.Now())
	for {
		rec, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
		if err != nil {
			tb.Fatal(err)
		}
		each(rec.RawSample)
	}
}

func counters(t *testing.T, objs *Objects) Counters {
	t.Helper()
	c, err := objs.ReadCounters(0)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSelection(t *testing.T) {
	tests := []struct {
		name     string
		mtu      uint32
		all      bool
		frame    frames.Spec
		selected bool
	}{
		{"untagged at mtu", 1500, false, frames.Spec{L3Len: 1500}, false},
		{"untagged above mtu", 1500, false, frames.Spec{L3Len: 1501}, true},
		{"802.1Q at mtu", 1500, false, frames.Spec{Tags: []layers.EthernetType{dot1q}, L3Len: 1500}, false},
		{"802.1Q above mtu", 1500, false, frames.Spec{Tags: []layers.EthernetType{dot1q}, L3Len: 1501}, true},
		{"802.1ad+802.1Q at mtu", 1500, false, frames.Spec{Tags: []layers.EthernetType{qinq, dot1q}, L3Len: 1500}, false},
		{"802.1ad+802.1Q above mtu", 1500, false, frames.Spec{Tags: []layers.EthernetType{qinq, dot1q}, L3Len: 1501}, true},
		{"two 802.1Q at mtu", 1500, false, frames.Spec{Tags: []layers.EthernetType{dot1q, dot1q}, L3Len: 1500}, false},
		{"small mtu, above", 576, false, frames.Spec{L3Len: 577}, true},
		{"small mtu, at", 576, false, frames.Spec{Tags: []layers.EthernetType{dot1q}, L3Len: 576}, false},
		{"all, small frame", 1500, true, frames.Spec{L3Len: 46}, true},
	}
	for _, tt := range tests {
		for _, build := range builds {
			t.Run(tt.name+"/"+build.name, func(t *testing.T) {
				objs := load(t, Config{MTU: tt.mtu, CaptureAll: tt.all, SnapLen: 256})
				frame := tt.frame.Build()
				run(t, build.prog(t, objs), frame, 1)

				want := Counters{Seen: 1}
				if tt.selected {
					want.Selected, want.Written = 1, 1
				}
				if got := counters(t, objs); got != want {
					t.Errorf("counters = %+v, want %+v", got, want)
				}
				evs := drain(t, objs)
				if len(evs) != int(want.Written) {
					t.Fatalf("ring holds %d events, want %d", len(evs), want.Written)
				}
				if !tt.selected {
					return
				}
				checkEvent(t, evs[0], frame, 256)
			})
		}
	}
}

func checkEvent(t *testing.T, ev event, frame []byte, snaplen int) {
	t.Helper()
	capLen := min(len(frame), snaplen)
	if ev.FrameLen != uint32(len(frame)) || ev.CapLen != uint32(capLen) {
		t.Errorf("frame_len, cap_len = %d, %d; want %d, %d", ev.FrameLen, ev.CapLen, len(frame), capLen)
	}
	if len(ev.data) != capLen {
		t.Errorf("record carries %d frame bytes, want exactly the %d captured", len(ev.data), capLen)
	}
	if !bytes.Equal(ev.data[:capLen], frame[:capLen]) {
		t.Errorf("captured bytes differ from the frame's first %d bytes", capLen)
	}
	// The tests map the loopback interface to slot 0; a test run
	// without a context runs as if received there, on queue 0.
	if ev.Slot != 0 || ev.RxQueue != 0 {
		t.Errorf("slot, rx_queue = %d, %d; want 0, 0", ev.Slot, ev.RxQueue)
	}
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
		t.Fatal(err)
	}
	if age := time.Duration(now.Nano() - int64(ev.TsNs)); age < 0 || age > 10*time.Second {
		t.Errorf("timestamp is %v old, want a CLOCK_MONOTONIC time of the last seconds", age)
	}
}

// A 9000-byte L3 packet does not fit one page, so the test run hands the
// program a multi-buffer frame.
func TestJumboMultiBuffer(t *testing.T) {
	frame := frames.Spec{L3Len: 9000}.Build()
	tests := []struct {
		name    string
		snaplen uint32
	}{
		{"default snaplen", 256},
		{"snaplen past the first fragment", 8192},
		{"snaplen larger than the frame", 9100},
		{"largest snaplen", MaxSnapLen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := load(t, Config{MTU: 1500, SnapLen: tt.snaplen, RingSize: 1 << 20})
			run(t, builds[0].prog(t, objs), frame, 1)
			if got, want := counters(t, objs), (Counters{Seen: 1, Selected: 1, Written: 1}); got != want {
				t.Errorf("counters = %+v, want %+v", got, want)
			}
			evs := drain(t, objs)
			if len(evs) != 1 {
				t.Fatalf("ring holds %d events, want 1", len(evs))
			}
			checkEvent(t, evs[0], frame, int(tt.snaplen))
		})
	}
}

func TestCountersRepeat(t *testing.T) {
	for _, build := range builds {
		t.Run(build.name, func(t *testing.T) {
			objs := load(t, Config{MTU: 1500, SnapLen: 128})
			small := frames.Spec{L3Len: 1000}.Build()
			big := frames.Spec{Tags: []layers.EthernetType{dot1q}, L3Len: 3000}.Build()
			prog := build.prog(t, objs)
			run(t, prog, small, 1000)
			run(t, prog, big, 7)
			run(t, prog, small, 3)
			want := Counters{Seen: 1010, Selected: 7, Written: 7}
			if got := counters(t, objs); got != want {
				t.Errorf("counters = %+v, want %+v", got, want)
			}
			if evs := drain(t, objs); len(evs) != 7 {
				t.Errorf("ring holds %d events, want 7", len(evs))
			}
		})
	}
}

// With nobody reading, the ring fills up; the free-space test must then
// account for every further selected frame.
func TestRingFull(t *testing.T) {
	for _, build := range builds {
		t.Run(build.name, func(t *testing.T) {
			// The smallest ring the kernel takes.
			ringSize := uint32(os.Getpagesize())
			cfg := Config{MTU: 1500, SnapLen: 256, RingSize: ringSize}
			objs := load(t, cfg)
			frame := frames.Spec{L3Len: 2000}.Build()
			run(t, build.prog(t, objs), frame, 100)

			// The kernel refuses a record that brings the fill level to the
			// ring's size, so n records fit while n*record < ring size.
			fits := uint64((ringSize - 1) / cfg.RecordSize())
			got := counters(t, objs)
			want := Counters{Seen: 100, Selected: 100, Written: fits, RingFull: 100 - fits}
			if got != want {
				t.Errorf("counters = %+v, want %+v", got, want)
			}
			if got.Selected != got.Written+got.RingFull+got.ReserveFailed {
				t.Errorf("selected %d != written %d + ring full %d + reserve failed %d",
					got.Selected, got.Written, got.RingFull, got.ReserveFailed)
			}
			evs := drain(t, objs)
			if uint64(len(evs)) != got.Written {
				t.Fatalf("ring holds %d events, counters say %d written", len(evs), got.Written)
			}
			for _, ev := range evs {
				checkEvent(t, ev, frame, 256)
			}

			// Once drained, the ring takes records again.
			run(t, build.prog(t, objs), frame, 1)
			if got := counters(t, objs); got.Written != fits+1 {
				t.Errorf("after draining, written = %d, want %d", got.Written, fits+1)
			}
		})
	}
}

func TestVerifierErrorShowsLogTail(t *testing.T) {
	bpftest.RequirePrivileges(t)
	// Returning an uninitialised register is the smallest program the
	// verifier refuses.
	_, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		License:      "MIT",
		Instructions: asm.Instructions{asm.Return()},
	})
	if err == nil {
		t.Fatal("the verifier accepted a program returning an uninitialised R0")
	}
	err = explain("load XDP program", err)
	var verr *VerifierError
	if !errors.As(err, &verr) {
		t.Fatalf("explain returned %T (%v), want *VerifierError", err, err)
	}
	msg := err.Error()
	if !bytes.Contains([]byte(msg), []byte("R0 !read_ok")) || !bytes.Contains([]byte(msg), []byte("verifier rejected")) {
		t.Errorf("message does not give the verifier's reason:\n%s", msg)
	}
}

func TestValidate(t *testing.T) {
	// Ring sizes follow the page size, which is not 4KiB everywhere.
	page := uint32(os.Getpagesize())
	size := func(n uint32) string { return FormatSize(uint64(n)) }
	tests := []struct {
		cfg  Config
		want string // empty: valid
	}{
		{Config{SnapLen: 256, RingSize: 8 << 20, Slots: 1}, ""},
		{Config{SnapLen: 0, RingSize: 8 << 20, Slots: 1}, "snaplen 0 is out of range 1-65557"},
		{Config{SnapLen: 65558, RingSize: 8 << 20, Slots: 1}, "snaplen 65558 is out of range 1-65557"},
		{Config{SnapLen: MaxSnapLen, RingSize: 8 << 20, Slots: 1}, ""},
		{Config{SnapLen: 256, RingSize: 3 * page, Slots: 1},
			"ring size " + size(3*page) + " is not a power of two: use " + size(2*page) + " or " + size(4*page) +
				" (a power of two from the page size, " + size(page) + ", to 2GiB)"},
		{Config{SnapLen: 256, RingSize: page + 8, Slots: 1},
			"ring size " + size(page+8) + " is not a power of two: use " + size(page) + " or " + size(2*page) +
				" (a power of two from the page size, " + size(page) + ", to 2GiB)"},
		{Config{SnapLen: 256, RingSize: 3 << 30, Slots: 1},
			"ring size 3GiB is larger than the kernel allows: give a power of two from the page size, " + size(page) + ", to 2GiB"},
		{Config{SnapLen: 256, RingSize: page / 2, Slots: 1},
			"ring size " + size(page/2) + " is smaller than a page: give a power of two from the page size, " + size(page) + ", to 2GiB"},
		{Config{SnapLen: 65535, RingSize: 64 << 10, Slots: 1},
			fmt.Sprintf("ring size 64KiB cannot hold one %d-byte record of snaplen 65535: use at least 128KiB", (8+EventHeaderSize+65535+7)&^7)},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", tt.cfg, err)
		case tt.want != "" && (err == nil || err.Error() != tt.want):
			t.Errorf("%+v: error %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

// recordSizes are frame lengths around the edges that matter: the
// shortest frame, sizes about the snap lengths tried, a full standard
// frame and a jumbo one.
var recordSizes = []int{60, 61, 255, 256, 257, 1514, 9014}

// Records hold exactly the captured bytes, whatever the snap length:
// whole frames, and frames cut at 300 bytes, each byte as in the frame.
func TestRecordSizedToFrame(t *testing.T) {
	for _, snaplen := range []uint32{MaxSnapLen, 300} {
		for _, size := range recordSizes {
			frame := frames.Spec{L3Len: size - 14}.Build()
			for _, build := range builds {
				if !build.takes(size) {
					continue
				}
				t.Run(fmt.Sprintf("snaplen=%d/frame=%d/%s", snaplen, size, build.name), func(t *testing.T) {
					objs := load(t, Config{MTU: 1500, CaptureAll: true, SnapLen: snaplen})
					run(t, build.prog(t, objs), frame, 1)
					evs := drain(t, objs)
					if len(evs) != 1 {
						t.Fatalf("ring holds %d records, want 1", len(evs))
					}
					checkEvent(t, evs[0], frame, int(snaplen))
				})
			}
		}
	}
}

// A ring holds as many records as its size allows for each frame size:
// the free-space test turns away exactly the first record that would not
// fit, and never leaves the reserve to fail.
func TestRingFullPerSize(t *testing.T) {
	// The smallest ring that takes whole frames.
	ringSize := uint32(128 << 10)
	for _, size := range recordSizes {
		frame := frames.Spec{L3Len: size - 14}.Build()
		for _, build := range builds {
			if !build.takes(size) {
				continue
			}
			t.Run(fmt.Sprintf("frame=%d/%s", size, build.name), func(t *testing.T) {
				cfg := Config{MTU: 1500, CaptureAll: true, SnapLen: MaxSnapLen, RingSize: ringSize}
				objs := load(t, cfg)
				// A record: the kernel's 8-byte header, the event, the
				// frame, rounded up to 8 bytes. The kernel refuses one
				// that would fill the ring to its size.
				record := (8 + uint64(EventHeaderSize) + uint64(size) + 7) &^ 7
				fits := (uint64(ringSize) - 1) / record
				n := fits + 5
				run(t, build.prog(t, objs), frame, int(n))
				got := counters(t, objs)
				if want := (Counters{Seen: n, Selected: n, Written: fits, RingFull: 5}); got != want {
					t.Errorf("counters = %+v, want %+v (%d-byte records in a %d-byte ring)", got, want, record, ringSize)
				}
				if evs := drain(t, objs); uint64(len(evs)) != fits {
					t.Errorf("ring holds %d records, want %d", len(evs), fits)
				}
			})
		}
	}
}
