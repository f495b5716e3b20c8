package capture

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/bpf/frames"
	"github.com/ringcap/ringcap/capture/packet"
)

type sliceSink struct {
	packets []packet.Packet
	flushes int
	first   func() // called on the first packet
}

func (s *sliceSink) WritePacket(p packet.Packet) error {
	if len(s.packets) == 0 && s.first != nil {
		s.first()
	}
	p.Data = bytes.Clone(p.Data)
	s.packets = append(s.packets, p)
	return nil
}

func (s *sliceSink) Flush() error { s.flushes++; return nil }

// openLoopback attaches the program to the namespace's loopback and feeds
// it n frames through BPF_PROG_TEST_RUN, which runs as if they arrived on
// loopback: they land in the ring before Run starts reading.
func openLoopback(t *testing.T, frame []byte, n int) *Capture {
	t.Helper()
	c, err := Open(Config{Interfaces: []string{"lo"}, MTU: 1500, SnapLen: 128, RingSize: 1 << 20, Mode: ModeGeneric, Directions: In})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := bpftest.RunTimes(testProgram(t, c), frame, n); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRunDrainsRingOnCancel(t *testing.T) {
	bpftest.InNewNetns(t)
	frame := frames.Spec{L3Len: 3000}.Build()
	before := time.Now()
	c := openLoopback(t, frame, 50)

	// Stop the capture while the ring still holds 49 records, and give
	// the stop time to take effect before Run goes on.
	ctx, cancel := context.WithCancel(context.Background())
	sink := sliceSink{first: func() {
		cancel()
		time.Sleep(100 * time.Millisecond)
	}}
	if err := c.Run(ctx, &sink, 0); err != nil {
		t.Fatal(err)
	}
	if len(sink.packets) != 50 || c.Packets() != 50 {
		t.Fatalf("sink got %d packets, Packets() = %d; the ring held 50", len(sink.packets), c.Packets())
	}
	if sink.flushes == 0 {
		t.Error("Run returned without flushing the sink")
	}
	for i, p := range sink.packets {
		// A test run without a context runs as if received on queue 0.
		if p.Interface != 0 || p.Length != len(frame) || p.Queue != 0 || string(p.Data) != string(frame[:128]) {
			t.Fatalf("packet %d: interface %d, length %d, queue %d, %d bytes; want 0, %d, 0, the frame's first 128",
				i, p.Interface, p.Length, p.Queue, len(p.Data), len(frame))
		}
		if p.Time.Before(before.Add(-time.Millisecond)) || p.Time.After(time.Now()) {
			t.Errorf("packet %d: time %v is not between the test's start %v and now", i, p.Time, before)
		}
	}
	counts, err := c.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if got := counts[0]; got.Seen != 50 || got.Selected != 50 || got.Written != 50 {
		t.Errorf("counters %+v, want 50 seen, selected and written", got)
	}
}

func TestRunStopsAtLimit(t *testing.T) {
	bpftest.InNewNetns(t)
	c := openLoopback(t, frames.Spec{L3Len: 2000}.Build(), 30)
	var sink sliceSink
	if err := c.Run(context.Background(), &sink, 10); err != nil {
		t.Fatal(err)
	}
	if len(sink.packets) != 10 {
		t.Fatalf("sink got %d packets, want the limit of 10", len(sink.packets))
	}
}

// Loopback has no native XDP: --hook auto captures its received frames
// at tcx ingress and says why, never in generic mode; a forced native
// mode fails with the interface's name and why; generic mode is had
// only when asked for.
func TestAttachModes(t *testing.T) {
	bpftest.InNewNetns(t)
	cfg := Config{Interfaces: []string{"lo"}, MTU: 1500, SnapLen: 128, RingSize: 1 << 20, Directions: In}
	tests := []struct {
		mode    Mode
		hook    HookChoice
		want    string // the hook's description; empty: refused
		refusal string
		unless  Setting // the last note's
	}{
		{ModeAuto, HookAuto, "inbound, tcx ingress; its driver offers no native XDP here", "", NoSetting},
		{ModeNative, HookAuto, "", "attach lo in native mode: its driver offers no native XDP here", NoSetting},
		{ModeAuto, HookXDP, "", "attach lo in native mode: its driver offers no native XDP here", NoSetting},
		{ModeGeneric, HookAuto, "inbound, XDP generic mode, multi-buffer; generic XDP costs as much per frame as tcx ingress or more, and some drivers make the kernel warn; " +
			"VLAN tags the driver takes out of frames may be missing", "", SettingHookTC},
	}
	for _, tt := range tests {
		cfg.Mode, cfg.Hook = tt.mode, tt.hook
		c, err := Open(cfg)
		if tt.want == "" {
			if err == nil {
				c.Close()
				t.Errorf("mode %s, hook %d: attached to lo", tt.mode, tt.hook)
			} else if !strings.HasPrefix(err.Error(), tt.refusal) {
				t.Errorf("mode %s, hook %d: error %q, want it to start %q", tt.mode, tt.hook, err, tt.refusal)
			}
			continue
		}
		if err != nil {
			t.Fatalf("mode %s, hook %d: %v", tt.mode, tt.hook, err)
		}
		h := c.Hooks()[0]
		if got := h.Describe(Note.String); got != tt.want {
			t.Errorf("mode %s, hook %d: attached as %q, want %q", tt.mode, tt.hook, got, tt.want)
		}
		if notes := h.Notes(); notes[len(notes)-1].Unless != tt.unless {
			t.Errorf("mode %s, hook %d: notes %+v, want the last one unless setting %d", tt.mode, tt.hook, notes, tt.unless)
		}
		c.Close()
	}
}

// --hook auto captures a veth's received frames at tcx ingress, which
// costs less than veth's XDP, and says why. The kernel says which devices
// run XDP themselves, of each device as it is configured: a veth with
// fewer receive queues than its peer has transmit queues runs none, and
// native mode refuses it without trying, saying why.
func TestNativeRefusedByFeatures(t *testing.T) {
	bpftest.InNewNetns(t)
	l := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "rc-q", NumRxQueues: 1, NumTxQueues: 1},
		PeerName: "rc-q-peer", PeerNumTxQueues: 2, PeerNumRxQueues: 2}
	if err := netlink.LinkAdd(l); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Interfaces: []string{"rc-q"}, MTU: 1500, SnapLen: 128, RingSize: 1 << 20, Directions: In}
	c, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := "inbound, tcx ingress; " + vethNotXDP
	if got := c.Hooks()[0].Describe(Note.String); got != want {
		t.Errorf("attached as %q, want %q", got, want)
	}
	if got := c.Hooks()[0].WhyNotXDP.Unless; got != SettingModeNative {
		t.Errorf("why not XDP is unless setting %d, want SettingModeNative", got)
	}
	c.Close()
	cfg.Mode = ModeNative
	if c, err := Open(cfg); err == nil {
		c.Close()
		t.Fatal("native mode attached")
	} else if msg, want := err.Error(), "attach rc-q in native mode: its driver offers no native XDP here"; msg != want {
		t.Errorf("error %q, want %q", msg, want)
	} else if refused := new(*NativeRefusedError); !errors.As(err, refused) || (*refused).XDPAsked {
		t.Errorf("error %#v, want a *NativeRefusedError without XDPAsked", err)
	}
}

// Each packet carries the frames of its interface lost since the packet
// before it: the losses sit on the first frame after them, across Runs,
// and add up to the program's counters.
func TestDropCounts(t *testing.T) {
	bpftest.InNewNetns(t)
	// The program counts losses per CPU: keep every frame on one.
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	cpu := 0
	for !set.IsSet(cpu) {
		cpu++
	}
	set.Zero()
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	page := os.Getpagesize()
	c, err := Open(Config{Interfaces: []string{"lo"}, MTU: 1500, SnapLen: 128, RingSize: uint32(page), Mode: ModeGeneric, Directions: In})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	frame := frames.Spec{L3Len: 3000}.Build()
	// A record: the ring's 8-byte header, the event, 128 bytes of frame.
	fits := (page - 1) / (8 + bpf.EventHeaderSize + 128)
	const lost = 7
	var sink sliceSink
	for _, step := range []struct{ sent, read int }{{fits + lost, fits}, {2, 2}} {
		if err := bpftest.RunTimes(testProgram(t, c), frame, step.sent); err != nil {
			t.Fatal(err)
		}
		if err := c.Run(context.Background(), &sink, uint64(step.read)); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint64
	for _, p := range sink.packets {
		got = append(got, p.DropCount)
	}
	want := make([]uint64, fits+2)
	want[fits] = lost
	if !slices.Equal(got, want) {
		t.Errorf("drop counts %v, want %v", got, want)
	}
	counts, err := c.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if counts[0].Dropped() != lost {
		t.Errorf("the program counted %d dropped, want %d", counts[0].Dropped(), lost)
	}
}

// testProgram is c's instance of the multi-buffer build, for test runs:
// they run as if received on loopback, so what they write c reads as the
// hook of loopback's, the first.
func testProgram(tb testing.TB, c *Capture) *ebpf.Program {
	tb.Helper()
	p, err := c.objs.Program(bpf.Instance{Build: bpf.XDP})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
