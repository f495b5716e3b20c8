package bpf

import (
	"bytes"
	"slices"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/vishvananda/netlink"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/bpf/frames"
)

// addVeth makes a veth pair, up, whose first end has the given index.
func addVeth(t *testing.T, name string, index int) {
	t.Helper()
	l := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, Index: index}, PeerName: name + "-p"}
	if err := netlink.LinkAdd(l); err != nil {
		t.Fatalf("add %s: %v", name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatalf("set %s up: %v", name, err)
	}
}

// One instance of each build serves every interface: a frame counts and
// records as the slot of its interface and the instance's direction, in
// the array for small indexes and the hash for large ones, and a frame of
// an interface without a slot is not seen at all.
func TestSlotByInterfaceIndex(t *testing.T) {
	bpftest.InNewNetns(t)
	const small, large, unmapped = 5, 70000, 7
	addVeth(t, "rc-small", small)
	addVeth(t, "rc-large", large)
	addVeth(t, "rc-none", unmapped)
	objs, err := Load(Config{MTU: 1500, SnapLen: 64, RingSize: 1 << 20, Slots: 4, Perfmon: true})
	if err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	for _, s := range []struct {
		index    int
		outbound bool
		slot     int
	}{{small, false, 1}, {large, false, 2}, {large, true, 3}, {small, true, 0}} {
		if err := objs.SetSlot(s.index, s.outbound, s.slot); err != nil {
			t.Fatal(err)
		}
	}
	frame := frames.Spec{L3Len: 2000}.Build()
	runOn := func(inst Instance, index int) {
		t.Helper()
		prog, err := objs.Program(inst)
		if err != nil {
			t.Fatal(err)
		}
		opts := ebpf.RunOptions{Data: frame}
		if inst.Build == TC {
			var ctx [unsafe.Sizeof(skbContext{}) + 4]byte // up to ifindex's end
			*(*uint32)(unsafe.Pointer(&ctx[ifindexOffset(t)])) = uint32(index)
			opts.Context = ctx[:ifindexOffset(t)+4]
		} else {
			opts.Context = ringcapXdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(index)}
		}
		if _, err := prog.Run(&opts); err != nil {
			t.Fatalf("test run on interface %d: %v", index, err)
		}
	}
	in, tcIn, tcOut := Instance{Build: XDP}, Instance{Build: TC}, Instance{Build: TC, Outbound: true}
	runOn(in, small)    // slot 1
	runOn(tcIn, large)  // slot 2
	runOn(in, large)    // slot 2
	runOn(tcOut, large) // slot 3
	runOn(tcOut, small) // slot 0
	runOn(in, unmapped) // none
	runOn(tcOut, 1)     // none: loopback
	if err := objs.ClearSlot(large, false); err != nil {
		t.Fatal(err)
	}
	runOn(in, large) // none any more
	runOn(tcOut, large)

	want := []uint64{1, 1, 2, 2}
	for slot, n := range want {
		c, err := objs.ReadCounters(slot)
		if err != nil {
			t.Fatal(err)
		}
		if c.Seen != n || c.Written != n {
			t.Errorf("slot %d: %+v, want %d seen and written", slot, c, n)
		}
	}
	evs := drain(t, objs)
	var slots []uint32
	for _, ev := range evs {
		slots = append(slots, ev.Slot)
	}
	if got, want := slots, []uint32{1, 2, 2, 3, 0, 3}; !slices.Equal(got, want) {
		t.Errorf("records' slots %v, want %v", got, want)
	}
	if n := len(objs.programs); n != 3 {
		t.Errorf("%d instances loaded for three builds and directions", n)
	}
}

// skbMember is the offset of a member of struct __sk_buff in the object's
// BTF.
func skbMember(t *testing.T, name string) uint32 {
	t.Helper()
	spec, err := loadRingcap()
	if err != nil {
		t.Fatal(err)
	}
	var skb *btf.Struct
	if err := spec.Types.TypeByName("__sk_buff", &skb); err != nil {
		t.Fatal(err)
	}
	for _, m := range skb.Members {
		if m.Name == name {
			return m.Offset.Bytes()
		}
	}
	t.Fatalf("__sk_buff has no member %s", name)
	return 0
}

func ifindexOffset(t *testing.T) uint32 { return skbMember(t, "ifindex") }

// The replay's tc context is written by hand: its cb must sit where the
// kernel's struct has it.
func TestReplayContextLayout(t *testing.T) {
	if got, want := uint32(unsafe.Offsetof(skbContext{}.Cb)), skbMember(t, "cb"); got != want {
		t.Errorf("skbContext.Cb at offset %d, __sk_buff's cb at %d", got, want)
	}
}

// A replay's instances count and record each frame as the slot its test
// run names, whatever interface the test run runs on, in every build and
// direction.
func TestReplayRunnerSlots(t *testing.T) {
	bpftest.RequirePrivileges(t)
	objs, err := Load(Config{MTU: 1500, SnapLen: 64, RingSize: 1 << 20, Slots: 3, Perfmon: true})
	if err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	frame := frames.Spec{L3Len: 2000}.Build()
	var runner ReplayRunner
	var wantSlots []uint32
	for _, inst := range []Instance{{Build: XDP}, {Build: XDPLinear}, {Build: TC}, {Build: TC, Outbound: true}, {Build: XDP, Outbound: true}} {
		inst.Replay = true
		prog, err := objs.Program(inst)
		if err != nil {
			t.Fatal(err)
		}
		for _, slot := range []int{2, 0, 1} {
			ret, err := runner.Run(prog, slot, frame)
			if err != nil {
				t.Fatalf("%+v, slot %d: %v", inst, slot, err)
			}
			if want := uint32(xdpPass); inst.Build == TC {
				if ret != 0xffffffff {
					t.Errorf("%+v returned %d, want TCX_NEXT", inst, int32(ret))
				}
			} else if ret != want {
				t.Errorf("%+v returned %d, want XDP_PASS", inst, ret)
			}
			wantSlots = append(wantSlots, uint32(slot))
		}
	}
	for slot := range 3 {
		c, err := objs.ReadCounters(slot)
		if err != nil {
			t.Fatal(err)
		}
		if c.Seen != 5 || c.Written != 5 {
			t.Errorf("slot %d: %+v, want 5 seen and written", slot, c)
		}
	}
	var got []uint32
	for _, ev := range drain(t, objs) {
		got = append(got, ev.Slot)
		if !bytes.Equal(ev.data, frame[:64]) {
			t.Errorf("record holds % x, want the frame's first 64 bytes: the metadata is not the frame's", ev.data)
		}
	}
	if !slices.Equal(got, wantSlots) {
		t.Errorf("records' slots %v, want %v", got, wantSlots)
	}
}
