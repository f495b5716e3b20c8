package bpf

import (
	"errors"
	"fmt"
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
)

// filterExpressions cover every primitive family of pcap-filter(7) on the
// protocol corpus (testdata/gen/protocols.go): hosts, nets, ports, port
// ranges, protocols and protochains, Ethernet and VLAN, lengths, byte
// offsets with arithmetic, TCP flags and ICMP types, combined with and,
// or, not and parentheses.
var filterExpressions = []string{
	"host 198.18.0.9",
	"src host 198.18.0.1",
	"dst host 198.18.0.53",
	"ip host 198.19.1.1",
	"net 198.19.0.0/16",
	"src net 198.18.0.0/24",
	"dst net 198.19.2.0 mask 255.255.255.0",
	"ip6 host 2001:2::9",
	"ip6 net 2001:2::/48",
	"port 443",
	"tcp port 443",
	"udp port 53",
	"src port 40000",
	"dst port 80",
	"port 53 and not udp",
	"portrange 8000-8100",
	"tcp portrange 1-1023",
	"tcp",
	"udp",
	"icmp",
	"icmp6",
	"ip",
	"ip6",
	"arp",
	"ip proto 47",
	"ip proto \\udp",
	"ip6 protochain 6",
	"ip protochain 17",
	"ether host 02:00:00:00:00:09",
	"ether src 02:00:00:00:00:01",
	"ether dst ff:ff:ff:ff:ff:ff",
	"ether broadcast",
	"ether multicast",
	"ip multicast",
	"ip6 multicast",
	"ether proto 0x88b5",
	"ether proto 0x88cc",
	"mpls",
	"mpls 100 and udp",
	"stp",
	"vlan",
	"vlan 100",
	"vlan and udp port 53",
	"vlan 200 and vlan 100",
	"vlan 300 and ip6",
	"greater 1515",
	"less 100",
	"len >= 9000",
	"len - 14 > 1500",
	"ip[2:2] > 1500",
	"ip[0] & 0xf > 5",
	"ip[6:2] & 0x1fff != 0",
	"ip[6] & 0x20 != 0",
	"ip[2:2] - ((ip[0] & 0xf) << 2) > 1000",
	"ip[2:2] / 4 * 4 = ip[2:2] % 1000 + 1000 * (ip[2:2] / 1000)",
	"ether[12:2] = 0x8100",
	"tcp[13] = 2",
	"tcp[tcpflags] & tcp-syn != 0",
	"tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)",
	"tcp[tcpflags] & (tcp-rst|tcp-fin) != 0",
	"tcp[tcpflags] & tcp-urg != 0",
	"tcp[((tcp[12] & 0xf0) >> 2):1] = 0",
	"icmp[icmptype] == icmp-echo",
	"icmp[icmptype] != icmp-echo and icmp[icmptype] != icmp-echoreply",
	"icmp6[0] == 135",
	"udp port 4789 and udp[8] & 0x08 != 0",
	"geneve",
	"greater 1515 and udp port 4789",
	"not ip",
	"not (tcp or udp)",
	"(tcp port 80 or udp port 53) and not src net 198.18.0.0/24",
	"ip and not ip host 198.18.0.1",
	"icmp or arp",
	"host 198.18.0.9 and tcp port 443",
	"ip6 and udp port 53",
	"ip6[6] = 17 or ip6[40] = 17",
	"ip and -ip[2:2] < -1500",
}

// tcpdumpMatches returns the times of the frames in path that tcpdump
// selects with expr: the reference, libpcap's own engine.
func tcpdumpMatches(t *testing.T, path, expr string) []time.Time {
	t.Helper()
	out := filepath.Join(t.TempDir(), "tcpdump.pcap")
	cmd := exec.Command("tcpdump", "-r", path, "-w", out, expr)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tcpdump %q: %v\n%s", expr, err, msg)
	}
	return frameTimes(t, out)
}

func frameTimes(t *testing.T, path string) []time.Time {
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

type corpusFrame struct {
	time time.Time
	data []byte
}

func readCorpus(t *testing.T, path string) []corpusFrame {
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
	var frames []corpusFrame
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, corpusFrame{ci.Timestamp, data})
	}
}

// TestFilterMatchesTcpdump runs every frame of the protocol corpus through
// the program, both builds, with each expression, and compares what it
// selects with what tcpdump -r selects from the same file.
func TestFilterMatchesTcpdump(t *testing.T) {
	bpftest.RequireTool(t, "tcpdump")
	const corpus = "../testdata/protocols.pcap"
	frames := readCorpus(t, corpus)
	if len(frames) < 40 {
		t.Fatalf("%d frames in %s; go generate ./testdata writes it", len(frames), corpus)
	}
	for _, expr := range filterExpressions {
		t.Run(expr, func(t *testing.T) {
			want := tcpdumpMatches(t, corpus, expr)
			f, err := CompileFilter(expr)
			if err != nil {
				t.Fatal(err)
			}
			objs := load(t, Config{MTU: 1500, CaptureAll: true, SnapLen: 64, Filter: f})
			for _, build := range builds {
				var got []time.Time
				// The builds count into the same counters.
				before := counters(t, objs).Selected
				for _, fr := range frames {
					if build.name == "linear" && len(fr.data) > 3000 {
						continue // the single-buffer build never sees a jumbo frame
					}
					run(t, build.prog(objs), fr.data, 1)
					if c := counters(t, objs); c.Selected > before {
						got = append(got, fr.time)
						before = c.Selected
					}
				}
				drain(t, objs)
				wantHere := want
				if build.name == "linear" {
					wantHere = slices.DeleteFunc(slices.Clone(want), func(ts time.Time) bool {
						return len(frameAt(frames, ts)) > 3000
					})
				}
				if !slices.EqualFunc(got, wantHere, time.Time.Equal) {
					t.Errorf("%s build selects frames %v, tcpdump %v", build.name, indexes(frames, got), indexes(frames, wantHere))
				}
			}
		})
	}
}

func frameAt(frames []corpusFrame, ts time.Time) []byte {
	for _, f := range frames {
		if f.time.Equal(ts) {
			return f.data
		}
	}
	return nil
}

// indexes names frames by their position in the corpus, from 1 as
// tcpdump -# numbers them.
func indexes(frames []corpusFrame, times []time.Time) string {
	var out []string
	for _, ts := range times {
		for i, f := range frames {
			if f.time.Equal(ts) {
				out = append(out, fmt.Sprint(i+1))
			}
		}
	}
	return "[" + strings.Join(out, " ") + "]"
}
