package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// sizes holds one frame of each length whole-frame records must get
// right (testdata/gen).
const sizes = testdata + "/sizes.pcap"

// checkFrames compares the frames of a ringcap file with those sent or
// recorded, cut at snaplen, byte for byte, and the file's snap length.
func checkFrames(t *testing.T, path string, snaplen int) {
	t.Helper()
	want := pcapngtest.ReadPcap(t, sizes)
	got := pcapngtest.Read(t, path).Packets
	if len(got) != len(want) {
		t.Fatalf("%d frames in the file, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].Length != w.Length || !bytes.Equal(got[i].Data, w.Data[:min(w.Length, snaplen)]) {
			t.Errorf("frame %d: %d of %d bytes, want the first %d of %d as sent", i+1,
				len(got[i].Data), got[i].Length, min(w.Length, snaplen), w.Length)
		}
	}
	info := pcapngtest.Run(t, "capinfos", "-M", path)
	if want := "Capture length = " + strconv.Itoa(snaplen) + "\n"; !strings.Contains(info, want) {
		t.Errorf("capinfos does not say %q:\n%s", want, info)
	}
}

// -s 0 keeps whole frames, -s 300 their first 300 bytes, in replay.
func TestReplayWholeFrames(t *testing.T) {
	bpftest.RequirePrivileges(t)
	for _, tt := range []struct {
		snaplen string
		want    int
	}{{"0", bpf.MaxSnapLen}, {"300", 300}} {
		t.Run("s="+tt.snaplen, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.pcapng")
			if r := replayIn(t, "sizes.pcap", "-w", out, "--all", "-s", tt.snaplen); r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.stderr)
			}
			checkFrames(t, out, tt.want)
		})
	}
}

// The same live: frames sent by tcpreplay onto the veth pair.
func TestRecordWholeFrames(t *testing.T) {
	bpftest.RequireTool(t, "tcpreplay")
	for _, tt := range []struct {
		snaplen string
		want    int
	}{{"0", bpf.MaxSnapLen}, {"300", 300}} {
		t.Run("s="+tt.snaplen, func(t *testing.T) {
			p := newVethPair(t)
			path := filepath.Join(t.TempDir(), "whole.pcapng")
			r := p.start(t, "-w", path, "-q", "--all", "-s", tt.snaplen)
			p.send(t, sizes)
			if code := r.stop(t, os.Interrupt); code != 0 {
				t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
			}
			checkFrames(t, path, tt.want)
		})
	}
}

// A snap length larger than any frame keeps whole frames, with a note.
func TestSnaplenClamped(t *testing.T) {
	bpftest.RequirePrivileges(t)
	out := filepath.Join(t.TempDir(), "out.pcapng")
	r := replayIn(t, "sizes.pcap", "-w", out, "--all", "-s", "262144")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if note := "ringcap: snaplen 262144 is more than any frame XDP gets (65557 bytes): keeping whole frames, snaplen 65557"; !strings.Contains(r.stderr, note) {
		t.Errorf("no note %q:\n%s", note, r.stderr)
	}
	checkFrames(t, out, bpf.MaxSnapLen)
}
