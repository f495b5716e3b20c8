package main

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// protocols is the corpus filter expressions are tried on.
const protocols = testdata + "/protocols.pcap"

// tcpdumpSelects returns the times of the frames that tcpdump -r selects
// from path with expr.
func tcpdumpSelects(t *testing.T, path, expr string) []time.Time {
	t.Helper()
	bpftest.RequireTool(t, "tcpdump")
	out := filepath.Join(t.TempDir(), "tcpdump.pcap")
	if msg, err := exec.Command("tcpdump", "-r", path, "-w", out, expr).CombinedOutput(); err != nil {
		t.Fatalf("tcpdump %q: %v\n%s", expr, err, msg)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var times []time.Time
	for {
		_, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return times
		}
		if err != nil {
			t.Fatal(err)
		}
		times = append(times, ci.Timestamp)
	}
}

func packetTimes(t *testing.T, path string) []time.Time {
	t.Helper()
	var times []time.Time
	for _, p := range pcapngtest.Read(t, path).Packets {
		times = append(times, p.Time)
	}
	return times
}

// On this corpus the default selection (L3 length above 1500, VLAN tags
// not counted) is tcpdump's "greater 1515": its only oversize VLAN frame
// is oversize either way.
const oversize = "greater 1515"

// ringcap replay with an expression writes what tcpdump -r selects, with
// the whole selection in each interface's if_filter.
func TestReplayFilter(t *testing.T) {
	bpftest.RequirePrivileges(t)
	for _, tt := range []struct {
		name      string
		args      []string // besides the input and -w
		reference string   // tcpdump's expression for the same selection
		ifFilter  string
	}{
		{"all, words", []string{"--all", "-s", "65535", "tcp", "port", "443"}, "tcp port 443", "tcp port 443"},
		{"all, --filter", []string{"--all", "-f", "udp port 53 or icmp"}, "udp port 53 or icmp", "udp port 53 or icmp"},
		{"all, vlan", []string{"--all", "vlan and (ip or ip6)"}, "vlan and (ip or ip6)", "vlan and (ip or ip6)"},
		{"oversize", []string{"udp port 4789 or tcp"}, oversize + " and (udp port 4789 or tcp)", "l3len > 1500 and (udp port 4789 or tcp)"},
		{"oversize, mtu 1000", []string{"--mtu", "1000", "not ip6"}, "greater 1015 and not ip6", "l3len > 1000 and (not ip6)"},
		{"oversize, no expression", nil, oversize, "l3len > 1500"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.pcapng")
			r := replayIn(t, append([]string{"protocols.pcap", "-w", out}, tt.args...)...)
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.stderr)
			}
			want := tcpdumpSelects(t, protocols, tt.reference)
			if got := packetTimes(t, out); !slices.EqualFunc(got, want, time.Time.Equal) {
				t.Errorf("ringcap selects %d frames at %v, tcpdump %d at %v", len(got), got, len(want), want)
			}
			info := pcapngtest.Run(t, "capinfos", "-M", out)
			if !strings.Contains(info, "Filter string = "+tt.ifFilter+"\n") {
				t.Errorf("capinfos does not show the filter string %q:\n%s", tt.ifFilter, info)
			}
		})
	}
}

// A live capture with an expression, on frames sent by tcpreplay: ringcap
// writes what tcpdump -r selects from the file that was sent.
func TestRecordFilter(t *testing.T) {
	bpftest.RequireTool(t, "tcpreplay")
	bpftest.RequireTool(t, "tcpdump")
	// Only unicast frames to the test's own addresses are sent.
	sent := filepath.Join(t.TempDir(), "sent.pcap")
	if msg, err := exec.Command("tcpdump", "-r", protocols, "-w", sent,
		"not (ip multicast or ip6 multicast or dst host 255.255.255.255)").CombinedOutput(); err != nil {
		t.Fatalf("tcpdump: %v\n%s", err, msg)
	}
	frames := len(tcpdumpSelects(t, sent, ""))
	for _, tt := range []struct {
		name      string
		args      []string
		reference string
		ifFilter  string
	}{
		{"all", []string{"--all", "-s", "65535", "tcp port 443 or arp or vlan"}, "tcp port 443 or arp or vlan", "tcp port 443 or arp or vlan"},
		{"oversize", []string{"-f", "udp port 4789 or tcp"}, oversize + " and (udp port 4789 or tcp)", "l3len > 1500 and (udp port 4789 or tcp)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newVethPair(t)
			path := filepath.Join(t.TempDir(), "live.pcapng")
			r := p.start(t, append([]string{"-w", path, "-q"}, tt.args...)...)
			if !strings.Contains(r.errors(), "): "+tt.ifFilter+", snaplen") {
				t.Errorf("the first line does not show the selection %q:\n%s", tt.ifFilter, r.errors())
			}
			before, err := p.RxPackets(0)
			if err != nil {
				t.Fatal(err)
			}
			if msg, err := exec.Command("ip", "netns", "exec", p.Tx, "tcpreplay", "-q", "-i", txIf, sent).CombinedOutput(); err != nil {
				t.Fatalf("tcpreplay: %v\n%s", err, msg)
			}
			// The interface counts a frame once the program has run on
			// it: stop only then.
			if !waitFor(10*time.Second, func() bool { n, _ := p.RxPackets(0); return n >= before+uint64(frames) }) {
				t.Fatalf("%s did not receive the %d frames sent", rxIf, frames)
			}
			if code := r.stop(t, os.Interrupt); code != 0 {
				t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
			}
			want := tcpdumpSelects(t, sent, tt.reference)
			got := pcapngtest.Fields(t, path, "frame.len")
			if len(got) != len(want) || len(want) == 0 {
				t.Fatalf("ringcap wrote %d frames, tcpdump selects %d of those sent", len(got), len(want))
			}
			// tcpreplay sends the frames as they are: compare their bytes.
			wantFile := filepath.Join(t.TempDir(), "want.pcap")
			if msg, err := exec.Command("tcpdump", "-r", sent, "-w", wantFile, tt.reference).CombinedOutput(); err != nil {
				t.Fatalf("tcpdump: %v\n%s", err, msg)
			}
			gotData := pcapngtest.Read(t, path).Packets
			wantData := readPcap(t, wantFile)
			for i := range wantData {
				if !slices.Equal(gotData[i].Data, wantData[i][:min(len(wantData[i]), len(gotData[i].Data))]) {
					t.Errorf("frame %d differs from the %d-th frame tcpdump selects", i+1, i+1)
				}
			}
			if info := pcapngtest.Run(t, "capinfos", "-M", path); !strings.Contains(info, "Filter string = "+tt.ifFilter+"\n") {
				t.Errorf("capinfos does not show the filter string %q:\n%s", tt.ifFilter, info)
			}
		})
	}
}

func readPcap(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, data)
	}
}
