package main

import (
	"bytes"
	byteorder "encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// testdata is the corpus that `go generate ./testdata` writes.
const testdata = "../../testdata"

// corpus lists the captures to replay, as the generator names them.
var corpus = []string{
	"threshold.pcapng",
	"jumbo.pcapng",
	"multi-interface.pcapng",
	"mixed-linktypes.pcapng",
	"multi-section.pcapng",
	"classic.pcap",
	"snaplen-128.pcap",
	"short-frame.pcap",
	"raw-ip.pcap",
	"linux-sll.pcap",
}

// replaySettings are the selections every capture is replayed with.
var replaySettings = []struct {
	name string
	args []string
}{
	{"default", nil},
	{"mtu1000-snap64", []string{"--mtu", "1000", "-s", "64"}},
	{"all-snap65535", []string{"--all", "-s", "65535"}},
}

// replayIn runs ringcap replay in the corpus directory, so that messages
// name the files as the golden files do, with times printed in UTC.
func replayIn(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"replay"}, args...)...)
	cmd.Dir = testdata
	cmd.Env = append(os.Environ(), "TZ=UTC")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return result{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
}

// golden compares got with testdata/golden/name, or rewrites it with
// -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join(testdata, "golden", name)
	if *bpftest.Update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./cmd/ringcap -run TestReplayGolden -update writes it)", err)
	}
	if filepath.Ext(name) == ".pcapng" {
		// The Section Header Block describes the machine and ringcap's
		// version, which golden files must not depend on: it is checked
		// on its own, the rest byte for byte.
		checkSectionHeader(t, got)
		got, want = afterSectionHeader(t, got), afterSectionHeader(t, want)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (%d bytes, want %d); if the change is right, rerun with -update and review the diff",
			path, len(got), len(want))
	}
}

// le reads pcapng's little-endian fields (binary names the ringcap build).
var le = byteorder.LittleEndian

// afterSectionHeader returns a pcapng file's blocks after its first,
// the Section Header Block.
func afterSectionHeader(t *testing.T, file []byte) []byte {
	t.Helper()
	if len(file) < 12 || le.Uint32(file) != 0x0a0d0d0a {
		t.Fatalf("not a little-endian pcapng file: % x", file[:min(len(file), 12)])
	}
	n := le.Uint32(file[4:])
	if int(n) > len(file) {
		t.Fatalf("section header block of %d bytes in a %d-byte file", n, len(file))
	}
	return file[n:]
}

// checkSectionHeader checks that the file names ringcap and the version it
// was built with.
func checkSectionHeader(t *testing.T, file []byte) {
	t.Helper()
	r, err := pcapgo.NewNgReader(bytes.NewReader(file), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.SectionInfo().Application, "ringcap "+testVersion; got != want {
		t.Errorf("shb_userappl = %q, want %q", got, want)
	}
}

// TestReplayGolden replays every corpus capture with every setting and
// compares the files, and the printed frames, with their golden copies.
func TestReplayGolden(t *testing.T) {
	bpftest.RequirePrivileges(t)
	for _, in := range corpus {
		base := strings.TrimSuffix(in, filepath.Ext(in))
		t.Run(base, func(t *testing.T) {
			r := replayIn(t, in)
			if r.code != 0 {
				t.Fatalf("replay %s: exit %d\n%s", in, r.code, r.stderr)
			}
			golden(t, base+".txt", []byte(r.stdout+r.stderr))

			for _, set := range replaySettings {
				out := filepath.Join(t.TempDir(), "out.pcapng")
				r := replayIn(t, append([]string{in, "-w", out}, set.args...)...)
				if r.code != 0 {
					t.Fatalf("replay %s %v: exit %d\n%s", in, set.args, r.code, r.stderr)
				}
				got, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				golden(t, base+"."+set.name+".pcapng", got)
				// Wireshark's engine reads it without a complaint.
				pcapngtest.Run(t, "tshark", "-r", out)
			}
		})
	}
}

// The printed frames and the written file tell the same story.
func TestReplayPrintMatchesFile(t *testing.T) {
	bpftest.RequirePrivileges(t)
	out := filepath.Join(t.TempDir(), "out.pcapng")
	if r := replayIn(t, "multi-interface.pcapng", "-w", out, "-s", "100"); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	rows := pcapngtest.Fields(t, out, "frame.interface_name", "frame.len", "frame.cap_len")
	r := replayIn(t, "multi-interface.pcapng", "-s", "100")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != len(rows) || len(rows) == 0 {
		t.Fatalf("printed %d frames, the file holds %d", len(lines), len(rows))
	}
	for i, row := range rows {
		// The file's frames are all inbound.
		want := row[0] + " In length " + row[1] + ", captured " + row[2]
		if !strings.HasSuffix(lines[i], want) {
			t.Errorf("line %d = %q, the file says %q", i, lines[i], want)
		}
	}
}

// In a file of several sections (files joined with cat), each section
// numbers its interfaces from 0 again; every frame must stay on its own
// interface, the second section's after the first's. (tshark 4.0 itself
// reads such a file's interface names wrongly, so the recorded side comes
// from testdata/gen.)
func TestReplayMultiSection(t *testing.T) {
	bpftest.RequirePrivileges(t)
	out := filepath.Join(t.TempDir(), "out.pcapng")
	if r := replayIn(t, "multi-section.pcapng", "-w", out, "--all", "-s", "65535"); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	// mixed-linktypes.pcapng (eth0, tun0), then multi-interface.pcapng
	// (eth0, eth1, eth2).
	// Each interface's description starts with its name: Wireshark
	// shows descriptions where there are any.
	var want [][]string
	for _, ifc := range []int{0, 0, 0, 1, 1, 1, 2, 3, 4, 3, 2, 4, 4} {
		name := []string{"eth0", "tun0", "eth0", "eth1", "eth2"}[ifc]
		want = append(want, []string{strconv.Itoa(ifc), name, name + ": replay of multi-section.pcapng"})
	}
	got := pcapngtest.Fields(t, out, "frame.interface_id", "frame.interface_name", "frame.interface_description")
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("replayed frames (interface id, name, description)\n%v, want\n%v", got, want)
	}
}

func TestReplayBadInput(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"broken/truncated.pcapng", "broken/truncated.pcapng: frame 23: broken file: file ends too early"},
		{"broken/bad-magic.pcap", "broken/bad-magic.pcap: not a pcap or pcapng file (it starts with deadbeef)"},
		{"broken/block-length-lies.pcapng", "broken/block-length-lies.pcapng: frame 1: broken file: file ends too early"},
		{"broken/caplen-lies.pcap", "broken/caplen-lies.pcap: frame 1: broken file: file ends too early"},
		{"broken/empty.pcap", "broken/empty.pcap: not a pcap or pcapng file: file ends too early"},
		{"unsupported-802.11.pcap", "link type 802.11 (105) cannot be replayed: the XDP program sees Ethernet frames"},
		{"no-such-file.pcap", "open no-such-file.pcap: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.pcapng")
			r := replayIn(t, tt.file, "-w", out)
			if r.code != exitRuntime {
				t.Errorf("exit code %d, want %d", r.code, exitRuntime)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tt.want) {
				t.Errorf("stderr = %q, want one line saying %q", r.stderr, tt.want)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a refused replay left %s behind", out)
			}
		})
	}
}
