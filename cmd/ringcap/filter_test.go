package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// protocols is the corpus filter expressions are tried on.
const protocols = testdata + "/protocols.pcap"

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
			want := pcapngtest.Times(pcapngtest.Tcpdump(t, protocols, tt.reference))
			if got := pcapngtest.Times(pcapngtest.Read(t, out).Packets); !slices.EqualFunc(got, want, time.Time.Equal) {
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
	// Only unicast frames to the test's own addresses are sent.
	sent := filepath.Join(t.TempDir(), "sent.pcap")
	if msg, err := exec.Command("tcpdump", "-r", protocols, "-w", sent,
		"not (ip multicast or ip6 multicast or dst host 255.255.255.255)").CombinedOutput(); err != nil {
		t.Fatalf("tcpdump: %v\n%s", err, msg)
	}
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
			p.send(t, sent)
			if code := r.stop(t, os.Interrupt); code != 0 {
				t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
			}
			// tcpreplay sends the frames as they are: compare their bytes.
			want := pcapngtest.Tcpdump(t, sent, tt.reference)
			got := pcapngtest.Read(t, path).Packets
			if len(got) != len(want) || len(want) == 0 {
				t.Fatalf("ringcap wrote %d frames, tcpdump selects %d of those sent", len(got), len(want))
			}
			for i, w := range want {
				if got[i].Length != w.Length || !slices.Equal(got[i].Data, w.Data[:min(len(w.Data), len(got[i].Data))]) {
					t.Errorf("frame %d differs from the %d-th frame tcpdump selects", i+1, i+1)
				}
			}
			if info := pcapngtest.Run(t, "capinfos", "-M", path); !strings.Contains(info, "Filter string = "+tt.ifFilter+"\n") {
				t.Errorf("capinfos does not show the filter string %q:\n%s", tt.ifFilter, info)
			}
		})
	}
}
