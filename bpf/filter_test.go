package bpf

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/asm"
	cbpf "golang.org/x/net/bpf"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer/pcapngtest"
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

// TestFilterMatchesTcpdump runs every frame of the protocol corpus through
// the program, both builds, with each expression, and compares what it
// selects with what tcpdump -r selects from the same file.
func TestFilterMatchesTcpdump(t *testing.T) {
	// Seconds in libpcap, the verifier and tcpdump, shared with no other
	// test: run beside the others.
	t.Parallel()
	for _, expr := range filterExpressions {
		t.Run(expr, func(t *testing.T) { checkAgainstTcpdump(t, expr) })
	}
}

// An expression of hundreds of terms loads, into both builds, and works.
func TestFilterLargeExpression(t *testing.T) {
	// Seconds in libpcap, the verifier and tcpdump, shared with no other
	// test: run beside the others.
	t.Parallel()
	var terms []string
	// 200 terms: libpcap's optimiser takes time that grows faster than
	// the expression (about 3x from 200 to 300 terms).
	for i := range 200 {
		// The corpus has frames from 198.19.1.1, in the list, and
		// 198.19.2.2, not in it.
		terms = append(terms, fmt.Sprintf("host 198.19.%d.%d", 1-i/100, i%100+1))
	}
	checkAgainstTcpdump(t, strings.Join(terms, " or "))
}

// Words are counted as libpcap's scanner splits them: operators written
// without spaces count as the words they stand for.
func TestFilterWords(t *testing.T) {
	tests := []struct {
		expr string
		want int
	}{
		{"tcp", 1},
		{"host 198.18.0.1 or host 198.18.0.2", 5},
		{"host 198.18.0.1||host 198.18.0.2", 5},
		{"  udp\tport 53\n", 3},
		{"!(tcp&&port 80)", 7},
		{"ip[2:2] != 1500", 3},
		{"ip[2:2]!=1500", 1},
		{"tcp[tcpflags] & tcp-syn != 0", 5},
		{"tcp[((tcp[12] & 0xf0) >> 2):1] = 0", 13},
		{"portrange 1-2 or 3-4", 4},
	}
	for _, tt := range tests {
		if got := filterWords(tt.expr); got != tt.want {
			t.Errorf("filterWords(%q) = %d, want %d", tt.expr, got, tt.want)
		}
	}
}

// An expression of more than MaxFilterWords words is refused before
// libpcap sees it; one of MaxFilterWords compiles.
func TestFilterTooLarge(t *testing.T) {
	// "less 1 or less 2 or ...": 2n + (n-1) words, and a "not" in front
	// for each word more.
	expr := func(words int) string {
		n := MaxFilterWords / 3
		terms := make([]string, n)
		for i := range terms {
			terms[i] = fmt.Sprintf("less %d", i+1)
		}
		e := strings.Join(terms, " or ")
		for w := 3*n - 1; w < words; w++ {
			e = "not " + e
		}
		return e
	}
	if got := filterWords(expr(MaxFilterWords)); got != MaxFilterWords {
		t.Fatalf("the expression at the bound has %d words, want %d", got, MaxFilterWords)
	}
	if _, err := CompileFilter(expr(MaxFilterWords)); err != nil {
		t.Errorf("%d words: %v", MaxFilterWords, err)
	}
	_, err := CompileFilter(expr(MaxFilterWords + 1))
	want := fmt.Sprintf("%d words, more than the %d ringcap gives libpcap", MaxFilterWords+1, MaxFilterWords)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%d words: %v, want an error saying %q", MaxFilterWords+1, err, want)
	}
}

// The keywords that select by interface are refused, whatever stands
// around them, in words that name the condition and none of ringcap's
// options.
func TestFilterInterfaceKeywords(t *testing.T) {
	tests := []struct{ expr, keyword string }{
		{"ifname eth0", "ifname"},
		{"tcp and on eth0", "on"},
		{"!(ifindex 2)", "ifindex"},
	}
	for _, tt := range tests {
		_, err := CompileFilter(tt.expr)
		var kwErr *InterfaceKeywordError
		if !errors.As(err, &kwErr) || kwErr.Keyword != tt.keyword || kwErr.Why == "" || strings.Contains(kwErr.Why, "-i") {
			t.Errorf("%q: %v, want an *InterfaceKeywordError for %q", tt.expr, err, tt.keyword)
			continue
		}
		want := fmt.Sprintf("filter expression %q: %q cannot be used here: %s", tt.expr, tt.keyword, kwErr.Why)
		if err.Error() != want {
			t.Errorf("%q: %q, want %q", tt.expr, err, want)
		}
	}
	if _, err := CompileFilter("ether host 02:00:00:00:00:01"); err != nil {
		t.Errorf("an expression without those keywords: %v", err)
	}
}

const protocolCorpus = "../testdata/protocols.pcap"

// checkAgainstTcpdump compiles expr, runs the protocol corpus through
// both builds and compares the frames selected with tcpdump's.
func checkAgainstTcpdump(t *testing.T, expr string) {
	t.Helper()
	bpftest.RequireTool(t, "tcpdump")
	frames := pcapngtest.ReadPcap(t, protocolCorpus)
	if len(frames) < 40 {
		t.Fatalf("%d frames in %s; go generate ./testdata writes it", len(frames), protocolCorpus)
	}
	want := pcapngtest.Times(pcapngtest.Tcpdump(t, protocolCorpus, expr))
	if len(want) == 0 || len(want) == len(frames) {
		t.Errorf("tcpdump selects %d of the %d frames: the corpus does not tell %q apart", len(want), len(frames), expr)
	}
	f, err := CompileFilter(expr)
	if err != nil {
		t.Fatal(err)
	}
	objs := load(t, Config{MTU: 1500, CaptureAll: true, SnapLen: 64, Filter: f})
	for _, build := range builds {
		fits := func(data []byte) bool { return build.takes(len(data)) }
		prog := build.prog(t, objs)
		var got []time.Time
		// The builds count into the same counters.
		before := counters(t, objs).Selected
		for _, fr := range frames {
			if !fits(fr.Data) {
				continue
			}
			run(t, prog, fr.Data, 1)
			if c := counters(t, objs); c.Selected > before {
				got, before = append(got, fr.Time), c.Selected
			}
		}
		drain(t, objs)
		prog.Close()
		wantHere := slices.DeleteFunc(slices.Clone(want), func(ts time.Time) bool { return !fits(frameAt(frames, ts)) })
		if !slices.EqualFunc(got, wantHere, time.Time.Equal) {
			t.Errorf("%s build selects frames %v, tcpdump %v", build.name, indexes(frames, got), indexes(frames, wantHere))
		}
	}
}

func frameAt(frames []pcapngtest.Packet, ts time.Time) []byte {
	for _, f := range frames {
		if f.Time.Equal(ts) {
			return f.Data
		}
	}
	return nil
}

// indexes names frames by their position in the corpus, from 1 as
// tcpdump -# numbers them.
func indexes(frames []pcapngtest.Packet, times []time.Time) string {
	var out []string
	for _, ts := range times {
		for i, f := range frames {
			if f.Time.Equal(ts) {
				out = append(out, fmt.Sprint(i+1))
			}
		}
	}
	return "[" + strings.Join(out, " ") + "]"
}

// An expression the kernel refuses is one line that says so and names
// its size: a program too large to load, and one the verifier rejects.
func TestFilterRefused(t *testing.T) {
	// Seconds in libpcap, the verifier and tcpdump, shared with no other
	// test: run beside the others.
	t.Parallel()
	bpftest.RequirePrivileges(t)
	// Too large: more instructions than the kernel loads.
	huge := make([]cbpf.Instruction, 0, 80001)
	for range 80000 {
		huge = append(huge, cbpf.LoadAbsolute{Off: 14, Size: 2})
	}
	huge = append(huge, cbpf.RetA{})
	tooLarge, err := newFilter("huge", huge)
	if err != nil {
		t.Fatal(err)
	}
	broken := asm.Instructions{asm.Return()}
	// Returning an uninitialised register is the smallest body the
	// verifier refuses.
	tests := []struct {
		name   string
		filter *Filter
		want   string
	}{
		{"too large", tooLarge,
			`the filter expression "huge" is too large for the kernel (80001 classic BPF instructions, ` + fmt.Sprint(len(tooLarge.bodies[target{}])) + ` once translated; at most 1000000 in all)`},
		{"verifier", &Filter{Expr: "broken", Classic: huge[:1], bodies: map[target]asm.Instructions{{}: broken}},
			`the kernel's verifier refused the filter expression "broken" (1 classic BPF instructions, 1 once translated): R0 !read_ok`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := load(t, Config{MTU: 1500, SnapLen: 64, Filter: tt.filter})
			_, err := objs.Program(Instance{Build: XDP})
			if err == nil {
				t.Fatal("the kernel took it")
			}
			if msg := err.Error(); msg != tt.want || strings.Contains(msg, "\n") {
				t.Errorf("error %q, want one line: %q", msg, tt.want)
			}
		})
	}
}

// An expression whose body needs jumps longer than eBPF's 16-bit offset
// to one shared exit gets exits along the way, and loads in every build.
func TestFilterLongJumps(t *testing.T) {
	var terms []string
	for i := range 400 {
		terms = append(terms, fmt.Sprintf("ether[%d:2] = %d", 20+i, i+1))
	}
	// 1,599 words, past MaxFilterWords: byte comparisons, which
	// libpcap compiles at once, make the longest body for the fewest
	// words, and the translation, not the bound, is tried here.
	f, err := compileFilter(strings.Join(terms, " or "))
	if err != nil {
		t.Fatal(err)
	}
	objs := load(t, Config{MTU: 1500, CaptureAll: true, SnapLen: 64, Filter: f})
	frame := make([]byte, 600)
	frame[20+399], frame[20+400] = 0x01, 0x90 // ether[419:2] = 400
	for _, build := range builds {
		prog := build.prog(t, objs)
		before := counters(t, objs).Selected
		run(t, prog, frame, 1)
		if counters(t, objs).Selected != before+1 {
			t.Errorf("%s build: the frame that matches the last term is not selected", build.name)
		}
		prog.Close()
	}
}
