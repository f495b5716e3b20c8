package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf/link"
)

// ringcap interfaces (and -D) lists each interface with where ringcap
// would capture on it: XDP native mode on veth, generic mode on
// loopback, and tcx ingress behind another XDP program, which it names.
func TestInterfaces(t *testing.T) {
	p := newVethPair(t)
	list := func(args ...string) map[string]string {
		t.Helper()
		r := runCommand(t, "ip", append([]string{"netns", "exec", p.Rx, binary}, args...)...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("ringcap %v: exit %d\n%s", args, r.code, r.stderr)
		}
		lines := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			_, rest, _ := strings.Cut(line, ".")
			name, _, _ := strings.Cut(rest, " ")
			lines[name] = line
		}
		return lines
	}
	idx := ifindex(t, p.Rx, rxIf)
	want := map[string]string{
		"lo":  "1.lo [unknown, MTU 65536, driver loopback]: inbound at XDP generic mode; outbound at tcx egress",
		rxIf:  fmt.Sprintf("%d.%s [up, MTU 9000, driver veth]: inbound at XDP native mode; outbound at tcx egress", idx, rxIf),
		rxIf2: fmt.Sprintf("%d.%s [up, MTU 9000, driver veth]: inbound at XDP native mode; outbound at tcx egress", ifindex(t, p.Rx, rxIf2), rxIf2),
	}
	for _, args := range [][]string{{"interfaces"}, {"-D"}} {
		if got := list(args...); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("ringcap %v:\n%v\nwant\n%v", args, got, want)
		}
	}
	prog := otherXDP(t)
	inNetns(t, p.Rx, func() {
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: idx, Flags: link.XDPGenericMode})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
	})
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	want[rxIf] = fmt.Sprintf("%d.%s [up, MTU 9000, driver veth]: inbound at tcx ingress, behind XDP program other_pass (id %d); outbound at tcx egress", idx, rxIf, id)
	if got := list("interfaces"); got[rxIf] != want[rxIf] {
		t.Errorf("with another XDP program:\n%s\nwant\n%s", got[rxIf], want[rxIf])
	}
}
