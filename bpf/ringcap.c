//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// ringcap's capture program: it passes every frame on untouched and copies
// the first snaplen bytes of the frames the user asked for into a ring
// buffer. What capture() does before its length test runs for every
// frame on the interface, so that path is kept to the hook's slot (two
// array lookups), a per-CPU counter, the frame's length and a compare.
//
// ringcap loads one instance of each entry point it uses and attaches it to
// every interface (but for the device-bound ones): the number of programs
// does not grow with the interfaces, which matters because the kernel frees
// programs through a shared workqueue that thousands freed at once can
// starve. One capture core, capture(), serves every hook and knows none:
// each entry point hands it the frame's slot and its hook's functions
// (struct hook), which read the length, the MAC header, the offloaded tag
// and the bytes where that hook has them. They are constants, so each
// entry point is compiled with only its own hook's code:
//
//   ringcap_linear  XDP, single-buffer frames only (drivers refuse to
//                   attach it where they would build multi-buffer ones):
//                   a frame ends at data_end.
//   ringcap_xdp     XDP, "xdp.frags": the length of all fragments takes
//                   bpf_xdp_get_buff_len(), a helper call that is most of
//                   what an unselected frame costs above a no-op program.
//   ringcap_lin_tag, ringcap_xdp_tag
//                   the same, bound to one device, which lets them ask
//                   the driver for the VLAN tag it took out of the frame
//                   (rx-vlan-offload) and put it back.
//   ringcap_tc      a tc (tcx) program, for egress and for ingress where
//                   another XDP program holds the interface; it sees the
//                   socket buffer's tag, and GSO packets.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

// Load-time constants, set from Go before the program is loaded. The
// verifier treats them as known values, which is what lets the reserve size
// and the copy length below pass its checks.
volatile const __u32 mtu = 1500;
volatile const __u32 capture_all = 0;
volatile const __u32 snaplen = 256;
volatile const __u64 ring_size = 8 << 20;
// Fill level from which a submit wakes the reader; see room.
volatile const __u64 wakeup_bytes = 2 << 20;
// Above it, a submit wakes the reader each 1 << wakeup_shift bytes.
volatile const __u64 wakeup_shift = 18;
// Set for an instance that sees sent frames (tc egress, and a replay's
// outbound frames): it looks up the outbound slot of the interface, and
// the MAC header test of mac_gap is for received frames only.
volatile const __u32 outbound = 0;
// Set for a tc instance loaded with CAP_PERFMON, which lets it read the
// kernel's socket buffer (see tunnel_segment_l3).
volatile const __u32 kernel_skb = 0;
// Set for a replay's instances: the test run's context names the slot
// (see replay_slot), since a recorded interface is no device here.
volatile const __u32 replay = 0;
// The number of rings (see rings).
volatile const __u32 ring_count = 1;

// event is the fixed header of every ring record; cap_len bytes of frame
// follow it.
struct event {
	__u64 ts_ns;     // bpf_ktime_get_ns(): CLOCK_MONOTONIC
	__u32 slot;      // the hook's: its interface and direction
	__u32 rx_queue;  // XDP only
	__u32 frame_len; // all fragments, and the tag put back
	__u32 cap_len;   // min(frame_len, snaplen)
	// This slot's frames lost on this CPU so far (ring_full +
	// reserve_failed): the reader turns it into each frame's
	// epb_dropcount, the losses since the previous frame.
	__u64 drops;
	__u32 cpu;
	__u32 pad;
};

// Only referenced through pointers, so without this declaration the type
// would be missing from the BTF that bpf2go reads the Go layout from.
const struct event *unused_event __attribute__((unused));

struct iface_counters {
	__u64 seen;
	__u64 selected;
	__u64 written;
	__u64 ring_full;      // selected, skipped because the ring had no room
	__u64 reserve_failed; // selected, room seen but bpf_ringbuf_reserve failed
};

// The ring buffers, ring_count of them, each ring_size bytes. A CPU
// writes into its own ring (cpu_ring): a ring's reserve lock is shared
// only by the CPUs of its group, where one ring for all would serialise
// every CPU that writes. The reader merges the rings by the records'
// timestamps.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1); // replaced from Go by ring_count
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_RINGBUF);
		__uint(max_entries, 8 << 20); // replaced from Go by ring_size
	});
} rings SEC(".maps");

// cpu_ring is, per CPU, the ring it writes into, set from Go (the CPUs
// spread evenly over the rings; a table, where computing it would take a
// division on every selected frame), and the ring its records went to
// last when its own was full (see ring_with_room).
struct ring_choice {
	__u32 home;
	__u32 spill;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct ring_choice);
	__uint(max_entries, 1);
} cpu_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct iface_counters);
	__uint(max_entries, 1); // replaced from Go by the number of slots
} counters SEC(".maps");

// The slots of the interfaces' hooks, each plus one: 0 says ringcap does
// not capture that direction there. One instance of each build serves
// every interface, and finds the frame's slot by the interface's index:
// in an array for the usual indexes, whose lookup the verifier inlines (a
// few nanoseconds a frame), and in a hash for the large ones a namespace
// reaches after many interfaces came and went, whose lookup costs some
// ten times more (docs/performance.md).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1); // replaced from Go
} inbound_slots SEC(".maps"), outbound_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32); // index << 1 | outbound
	__type(value, __u32);
	__uint(max_entries, 1); // replaced from Go by the number of slots
} large_index_slots SEC(".maps");

// scratch holds a record per CPU for write_record: the event, then
// snaplen bytes of frame. A per-CPU array takes no value as large as a
// whole jumbo frame, so it is an array with an entry per CPU; its value
// size and entries are set from Go.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct event) + 256); // replaced from Go
	__uint(max_entries, 1);                         // replaced from Go
} scratch SEC(".maps");

#define ETH_HDR_LEN 14
#define ETH_ADDRS_LEN 12
#define VLAN_TAG_LEN 4
// Every ring record carries an 8-byte header (BPF_RINGBUF_HDR_SZ) and is
// rounded up to 8 bytes.
#define RINGBUF_HDR_LEN 8
// tcx's "next program" verdict (Linux 6.6), missing from older headers:
// the frame goes on as if ringcap were not there.
#define TCX_NEXT -1
// skb_shinfo(skb)->gso_size of a packet cut along its fragments (SCTP).
#define GSO_BY_FRAGS 0xFFFF

struct hook;

// frame is what capture() knows of a frame. The entry point's prologue
// sets ctx and slot; its hook's functions set the rest when capture()
// comes to need it, so that a frame the length test turns away costs no
// more than that test.
struct frame {
	void *ctx;
	__u32 slot; // the hook's slot plus one, 0 for none (hook_slot); capture() takes the one off
	__u32 gap;  // ETH_HDR_LEN where the data does not start with the MAC header (see mac_gap), else 0
	__u64 len;  // the bytes from the MAC header, all fragments, without an offloaded tag
	__u32 vlan;     // the offloaded tag, TPID << 16 | TCI, or 0
	__u32 rx_queue; // XDP only
};

// hook is what differs between the hooks, as functions of the frame.
// Each entry point passes a constant one down as an argument (a field of
// the frame, whose address the helpers take, would be read back from the
// stack after each helper call): clang then calls, and inlines, the
// functions themselves, as it must, since BPF has no indirect calls.
struct hook {
	// measure sets len and gap; it returns 0 for a frame its hook can
	// tell is too short to be wanted without them.
	int (*measure)(struct frame *f);
	// first_buffer is where the frame's first buffer starts; *end where
	// it ends.
	void *(*first_buffer)(const struct frame *f, void **end);
	// segment_l3 is the L3 length of the frames a GSO packet becomes on
	// the wire, 0 for any other packet; l2 is the MAC header's length
	// with the tags in the frame's bytes.
	__u32 (*segment_l3)(const struct frame *f, __u32 l2);
	// describe sets vlan and rx_queue, which only a selected frame needs.
	void (*describe)(struct frame *f);
	// filter runs the user's expression (see ringcap_filter_xdp).
	int (*filter)(const struct frame *f, __u64 frame_len);
	// load reads bytes of the data at off, across fragments (XDP) and the
	// socket buffer's paged part (tc); load_mac reads bytes of the MAC
	// header, where it is when gap says it is not in the data.
	long (*load)(const struct frame *f, __u32 off, void *to, __u32 len);
	long (*load_mac)(const struct frame *f, __u32 off, void *to, __u32 len);
};

extern int bpf_xdp_metadata_rx_vlan_tag(const struct xdp_md *ctx, __be16 *vlan_proto, __u16 *vlan_tci) __ksym;

static __always_inline int is_vlan(__u16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

// vlan_tags counts the 802.1Q/802.1ad tags (at most two) in the frame's
// bytes. Tags sit in the first buffer of any real frame; a tag that is
// not there is not counted.
static __always_inline __u32 vlan_tags(const struct hook *h, const struct frame *f)
{
	void *end;
	__u16 *proto = h->first_buffer(f, &end) + ETH_ADDRS_LEN;
	__u32 tags = 0;

	if ((void *)(proto + 1) > end || !is_vlan(*proto))
		return 0;
	tags++;
	proto += 2;
	if ((void *)(proto + 1) <= end && is_vlan(*proto))
		tags++;
	return tags;
}

// hook_slot is the slot plus one of the hook the frame came through: of
// the interface index, in the instance's direction; 0 if ringcap does not
// capture there.
static __always_inline __u32 hook_slot(__u32 index)
{
	__u32 *slot = bpf_map_lookup_elem(outbound ? (void *)&outbound_slots : (void *)&inbound_slots, &index);
	if (!slot) {
		__u32 key = index << 1 | outbound;
		slot = bpf_map_lookup_elem(&large_index_slots, &key);
	}
	return slot ? *slot : 0;
}

// selected says whether the frame's length asks for it. len is the
// frame's bytes from its MAC header, without an offloaded tag: a tag
// changes no L3 length.
static __always_inline int selected(const struct hook *h, const struct frame *f)
{
	if (capture_all)
		return 1;
	// Tags only make the L3 length smaller, so a frame whose untagged L3
	// length fits the MTU is dropped from consideration without reading
	// a byte of it; so is a GSO packet, longer than any of its frames.
	if (f->len <= ETH_HDR_LEN + (__u64)mtu)
		return 0;
	// Where the data holds no MAC header (gap: behind generic XDP), the
	// stack has taken the outer tag out already (it untags before tc),
	// and there is no MAC header to count tags in.
	__u32 l2 = ETH_HDR_LEN + (f->gap ? 0 : VLAN_TAG_LEN * vlan_tags(h, f));
	__u32 seg = h->segment_l3(f, l2);
	return (seg ? seg : f->len - l2) > mtu;
}

// copy_span copies the recorded frame's bytes [from, min(cap, to)) to
// dst + from, reading them at off with load_mac (mac) or load. from is a
// constant and cap at most snaplen (capture clamps it), which is how the
// verifier sees the copy within the record; a span of no bytes is no
// copy, since the helpers refuse a length of 0.
static __always_inline long copy_span(const struct hook *h, const struct frame *f, void *dst, __u64 cap,
				      const __u32 from, const __u64 to, const int mac, __u32 off)
{
	__u64 end = cap < to ? cap : to;
	if (end <= from)
		return 0;
	if (mac)
		return h->load_mac(f, off, dst + from, end - from);
	return h->load(f, off, dst + from, end - from);
}

// copy_frame copies the frame's first cap bytes to dst as the file holds
// it: the offloaded tag (if any) put back after the MAC addresses, as
// libpcap does for tcpdump, and the MAC header read where it is when gap
// says the data does not start with it. It cannot fail for cap <= the
// frame's length; if it did, the caller counts the frame with the
// reserve failures, so that selected = written + ring_full +
// reserve_failed always holds.
static __always_inline long copy_frame(const struct hook *h, const struct frame *f, void *dst, __u64 cap)
{
	const __u64 all = ~0ULL;
	if (!f->vlan) {
		if (!f->gap)
			return h->load(f, 0, dst, cap);
		if (copy_span(h, f, dst, cap, 0, ETH_HDR_LEN, 1, 0) < 0)
			return -1;
		return copy_span(h, f, dst, cap, ETH_HDR_LEN, all, 0, 0);
	}
	if (copy_span(h, f, dst, cap, 0, ETH_ADDRS_LEN, 1, 0) < 0)
		return -1;
	// Byte by byte, each within cap: the record ends where the snap
	// length does, which may be inside the tag.
	__u32 tag = bpf_htonl(f->vlan);
	for (int i = 0; i < VLAN_TAG_LEN; i++)
		if (cap > ETH_ADDRS_LEN + i)
			((__u8 *)dst)[ETH_ADDRS_LEN + i] = ((__u8 *)&tag)[i];
	// The EtherType: in the data right after the addresses, or at the end
	// of the MAC header apart from it.
	const __u32 type_at = ETH_ADDRS_LEN + VLAN_TAG_LEN;
	if (!f->gap)
		return copy_span(h, f, dst, cap, type_at, all, 0, ETH_ADDRS_LEN);
	if (copy_span(h, f, dst, cap, type_at, type_at + 2, 1, ETH_ADDRS_LEN) < 0)
		return -1;
	return copy_span(h, f, dst, cap, type_at + 2, all, 0, 0);
}

// room says whether a record carrying size bytes of frame fits in the
// ring below limit bytes, and sets the submit's wakeup flag.
//
// bpf_ringbuf_reserve() takes a lock shared by all CPUs, and fails anyway
// when the consumer is behind; a snapshot of the fill level is much
// cheaper. A record takes an 8-byte header and is rounded up to 8 bytes;
// the kernel refuses one that would bring the fill level to ring_size or
// beyond, hence ">=".
//
// Waking the reader for every record costs it a system call a frame
// whenever it keeps up. Records are submitted without a wakeup until the
// ring fills to wakeup_bytes; the reader's own timer picks up the rest
// within its idle wait. Above it, a record wakes the reader only if it
// takes the fill level across a multiple of 1 << wakeup_shift: a wakeup
// is an interrupt the CPU sends itself (irq_work), a VM exit on a
// virtual machine, and one a record made it 10% of the machine's time in
// a sustained capture there. Records submitted at once on two CPUs can
// both miss a boundary (the fill level is a snapshot); a record across
// the next boundary wakes the reader then (wakeupShift in load.go puts
// several between wakeup_bytes and a full ring).
static __always_inline int room(void *ring, __u64 size, __u64 limit, __u64 *wakeup)
{
	__u64 record = (RINGBUF_HDR_LEN + sizeof(struct event) + size + 7) & ~7ULL;
	__u64 fill = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) + record;
	if (fill >= limit)
		return 0;
	__u64 before = fill - record;
	int crossed = before < wakeup_bytes || (before ^ fill) >> wakeup_shift;
	*wakeup = fill >= wakeup_bytes && crossed ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	return 1;
}

// SPILL_TRIES bounds the other rings a CPU tries when its own is full:
// when every ring is full, a frame costs that many more free-space tests.
#define SPILL_TRIES 2
// SPILL_LIMIT is how far another CPU's records may fill a ring.
#define SPILL_LIMIT (ring_size - ring_size / 8)

// next_ring is the ring after i, passing over home.
static __always_inline __u32 next_ring(__u32 i, __u32 home)
{
	for (int step = 0; step < 2; step++) {
		i = i + 1 < ring_count ? i + 1 : 0;
		if (i != home)
			break;
	}
	return i;
}

// ring_with_room returns the ring a record of size bytes of frame goes
// into, or NULL, counting the frame as ring_full, if none has room.
//
// The ring is the CPU's own, unless it is full: then the one this CPU
// spilled into last, or the next ones, up to SPILL_LIMIT of each. A hot
// CPU (one queue taking all the traffic) so uses most of the other
// rings' room, as it would the room of one shared ring of the same total
// size, and takes their locks only while its own ring is full, when
// frames are about to be lost anyway; and the last eighth of a ring stays
// its own CPUs', whose frames still go in while another CPU floods.
static __always_inline void *ring_with_room(struct iface_counters *cnt, __u64 size, __u64 *wakeup)
{
	__u32 zero = 0;
	struct ring_choice *choice = bpf_map_lookup_elem(&cpu_ring, &zero);
	if (!choice)
		goto full;
	__u32 home = choice->home;
	void *ring = bpf_map_lookup_elem(&rings, &home);
	if (ring && room(ring, size, ring_size, wakeup))
		return ring;
	for (int i = 0; i < SPILL_TRIES && i < ring_count - 1; i++) {
		__u32 other = choice->spill;
		if (other == home || other >= ring_count)
			other = next_ring(home, home);
		ring = bpf_map_lookup_elem(&rings, &other);
		if (ring && room(ring, size, SPILL_LIMIT, wakeup)) {
			choice->spill = other;
			return ring;
		}
		choice->spill = next_ring(other, home);
	}
full:
	cnt->ring_full++;
	return NULL;
}

static __always_inline void fill_event(struct event *ev, const struct frame *f, struct iface_counters *cnt,
				       __u64 frame_len, __u64 cap)
{
	ev->ts_ns = bpf_ktime_get_ns();
	ev->slot = f->slot;
	ev->rx_queue = f->rx_queue;
	ev->frame_len = frame_len;
	ev->cap_len = cap;
	// The counters are this CPU's, and this CPU's records reach the ring
	// in order: the reader takes differences per CPU.
	ev->drops = cnt->ring_full + cnt->reserve_failed;
	ev->cpu = bpf_get_smp_processor_id();
	ev->pad = 0;
}

// write_into writes a record of exactly the captured bytes into ring,
// the choice BenchmarkRecordSize measured against the others
// (bpf/variants).
//
// A frame that fills the snap length, as most selected frames do, fits a
// record of a constant size, which the verifier requires of a reserve: it
// is copied once, straight into the ring. A shorter frame is copied into
// this CPU's scratch record, and that into the ring with
// bpf_ringbuf_output(), which takes a size the verifier does not know.
// XDP and tc run with bottom halves off, so nothing else on this CPU uses
// the scratch record meanwhile.
static __always_inline void write_into(void *ring, __u64 wakeup, const struct hook *h, const struct frame *f,
				       struct iface_counters *cnt, __u64 cap, __u64 frame_len)
{
	struct event *ev;

	if (cap == snaplen) {
		ev = bpf_ringbuf_reserve(ring, sizeof(*ev) + snaplen, 0);
		if (!ev) {
			cnt->reserve_failed++;
			return;
		}
		if (copy_frame(h, f, (void *)(ev + 1), cap) < 0) {
			bpf_ringbuf_discard(ev, 0);
			cnt->reserve_failed++;
			return;
		}
		fill_event(ev, f, cnt, frame_len, cap);
		bpf_ringbuf_submit(ev, wakeup);
		cnt->written++;
		return;
	}
	__u32 cpu = bpf_get_smp_processor_id();
	ev = bpf_map_lookup_elem(&scratch, &cpu);
	if (!ev || copy_frame(h, f, (void *)(ev + 1), cap) < 0) {
		cnt->reserve_failed++;
		return;
	}
	fill_event(ev, f, cnt, frame_len, cap);
	if (bpf_ringbuf_output(ring, ev, sizeof(*ev) + cap, wakeup) < 0) {
		cnt->reserve_failed++;
		return;
	}
	cnt->written++;
}

// write_record writes the frame into the ring of ring_with_room.
static __always_inline void write_record(const struct hook *h, const struct frame *f, struct iface_counters *cnt,
					 __u64 cap, __u64 frame_len)
{
	__u64 wakeup = 0;
	void *ring = ring_with_room(cnt, cap, &wakeup);
	if (ring)
		write_into(ring, wakeup, h, f, cnt, cap, frame_len);
}

// capture is the whole program, for frame f of hook h.
static __always_inline void capture(const struct hook *h, struct frame *f)
{
	// An interface that is no hook of this capture's (yet), or no longer.
	if (!f->slot--)
		return;
	__u32 slot = f->slot;
	struct iface_counters *cnt = bpf_map_lookup_elem(&counters, &slot);
	if (!cnt)
		return;
	cnt->seen++;
	if (!h->measure(f) || !selected(h, f))
		return;

	// From here on the frame is what the file will hold: the tag put
	// back is seen by the expression and counted in the length.
	h->describe(f);
	__u64 frame_len = f->len + (f->vlan ? VLAN_TAG_LEN : 0);
	// The verifier needs the copy length proven within [1, snaplen]:
	// clamp in unsigned arithmetic. Frames are never shorter than an
	// Ethernet header, so cap is never 0.
	__u64 cap = frame_len < snaplen ? frame_len : snaplen;
	if (cap < 1 || cap > snaplen)
		return;
	// The expression runs only for frames the length test kept, and
	// before anything touches the ring.
	if (!h->filter(f, frame_len))
		return;
	cnt->selected++;
	write_record(h, f, cnt, cap, frame_len);
}

// ringcap_filter_xdp and ringcap_filter_tc are the user's filter expression
// (--filter) for each context. The loader (bpf/inject.go) replaces the body
// with the expression, compiled by libpcap and translated to eBPF; without
// one it stays as it is and every frame matches. len is the frame's length
// as recorded and vlan the tag put back, which the expression must see;
// gap is the frame's (only tc sets one).
// They are global functions: clang neither inlines them nor folds their
// result into the caller, and the verifier checks each once. Every argument
// must be used, or clang passes nothing in its register (the filter needs
// them); and ctx is read, not compared: without CAP_PERFMON the verifier
// refuses pointer comparisons.
__noinline int ringcap_filter_xdp(struct xdp_md *ctx, __u32 len, __u32 vlan)
{
	return ctx->ingress_ifindex != 0 || len != 0 || vlan != 0;
}

__noinline int ringcap_filter_tc(struct __sk_buff *ctx, __u32 len, __u32 vlan, __u32 gap)
{
	return ctx->len != 0 || len != 0 || vlan != 0 || gap != 0;
}

// The XDP hooks.

// measure_frags: the length of all fragments takes bpf_xdp_get_buff_len(),
// a helper call that is most of what an unselected frame costs above a
// no-op program.
static __always_inline int measure_frags(struct frame *f)
{
	f->len = bpf_xdp_get_buff_len(f->ctx);
	return 1;
}

// measure_linear: a single-buffer frame ends at data_end, so the unwanted
// ones are told apart without bpf_xdp_get_buff_len(). The verifier allows
// a register offset on a packet pointer only with CAP_PERFMON (a Spectre
// v1 guard), and only one it knows below 64 KiB: ringcap loads this build
// only with CAP_PERFMON, and the test of mtu > 0xffff bounds the offset.
static __always_inline int measure_linear(struct frame *f)
{
	struct xdp_md *ctx = f->ctx;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	if (!capture_all && (mtu > 0xffff || data + ETH_HDR_LEN + mtu >= data_end))
		return 0;
	f->len = data_end - data;
	return 1;
}

static __always_inline void *first_buffer_xdp(const struct frame *f, void **end)
{
	*end = (void *)(long)((struct xdp_md *)f->ctx)->data_end;
	return (void *)(long)((struct xdp_md *)f->ctx)->data;
}

// XDP frames are never GSO packets.
static __always_inline __u32 no_segments(const struct frame *f, __u32 l2)
{
	return 0;
}

static __always_inline void describe_xdp(struct frame *f)
{
	f->rx_queue = ((struct xdp_md *)f->ctx)->rx_queue_index;
}

// describe_xdp_tag asks the driver for the VLAN tag it took out of the
// frame (rx-vlan-offload), which only a program bound to the device may.
static __always_inline void describe_xdp_tag(struct frame *f)
{
	__be16 proto;
	__u16 tci;
	describe_xdp(f);
	if (bpf_xdp_metadata_rx_vlan_tag(f->ctx, &proto, &tci) >= 0)
		f->vlan = (__u32)bpf_ntohs(proto) << 16 | tci;
}

static __always_inline int filter_xdp(const struct frame *f, __u64 frame_len)
{
	return ringcap_filter_xdp(f->ctx, frame_len, f->vlan);
}

static __always_inline long load_xdp(const struct frame *f, __u32 off, void *to, __u32 len)
{
	return bpf_xdp_load_bytes(f->ctx, off, to, len);
}

// xdp_slot is hook_slot's, or in a replay's test run the one in the first
// four bytes of XDP metadata, since a recorded interface is no device here.
static __always_inline __u32 xdp_slot(struct xdp_md *ctx)
{
	if (!replay)
		return hook_slot(ctx->ingress_ifindex);
	__u32 *meta = (void *)(long)ctx->data_meta;
	if ((void *)(meta + 1) > (void *)(long)ctx->data)
		return 0;
	return *meta;
}

// The XDP hooks differ in how they measure a frame (see ringcap_linear)
// and whether they ask the driver for its tag; the MAC header is where
// the data starts: XDP sets no gap.
#define XDP_HOOK(measure_fn, describe_fn)                                                                      \
	{                                                                                                      \
		.measure = measure_fn, .first_buffer = first_buffer_xdp, .segment_l3 = no_segments,             \
		.describe = describe_fn, .filter = filter_xdp, .load = load_xdp, .load_mac = load_xdp,          \
	}
static const struct hook xdp_frags = XDP_HOOK(measure_frags, describe_xdp);
static const struct hook xdp_linear = XDP_HOOK(measure_linear, describe_xdp);
static const struct hook xdp_frags_tag = XDP_HOOK(measure_frags, describe_xdp_tag);
static const struct hook xdp_linear_tag = XDP_HOOK(measure_linear, describe_xdp_tag);

static __always_inline void capture_xdp(struct xdp_md *ctx, const struct hook *hook)
{
	struct frame f = {.ctx = ctx, .slot = xdp_slot(ctx)};
	capture(hook, &f);
}

SEC("xdp")
int ringcap_linear(struct xdp_md *ctx)
{
	capture_xdp(ctx, &xdp_linear);
	return XDP_PASS;
}

SEC("xdp.frags")
int ringcap_xdp(struct xdp_md *ctx)
{
	capture_xdp(ctx, &xdp_frags);
	return XDP_PASS;
}

SEC("xdp")
int ringcap_lin_tag(struct xdp_md *ctx)
{
	capture_xdp(ctx, &xdp_linear_tag);
	return XDP_PASS;
}

SEC("xdp.frags")
int ringcap_xdp_tag(struct xdp_md *ctx)
{
	capture_xdp(ctx, &xdp_frags_tag);
	return XDP_PASS;
}

// The tc hook.

// mac_gap is ETH_HDR_LEN where the socket buffer's data starts at the
// network header, else 0. tcx pushes the socket buffer's mac_len bytes
// back in front of the data before it runs a program at ingress; behind
// a generic-mode XDP program Linux (6.18) hands it a socket buffer whose
// mac_len is 0, so nothing is pushed. The MAC header is still where
// skb_mac_header() says (tcpdump reads it there), and so is read relative
// to it: the data starts with it if the two hold the same bytes.
static __always_inline __u32 mac_gap(struct __sk_buff *skb)
{
	__u64 mac[2] = {}, pkt[2] = {};
	void *data = (void *)(long)skb->data;
	if (data + ETH_HDR_LEN > (void *)(long)skb->data_end ||
	    bpf_skb_load_bytes_relative(skb, 0, mac, ETH_HDR_LEN, BPF_HDR_START_MAC) < 0)
		return 0;
	__builtin_memcpy(pkt, data, ETH_HDR_LEN);
	return mac[0] == pkt[0] && mac[1] == pkt[1] ? 0 : ETH_HDR_LEN;
}

// measure_tc: where the data starts at the network header, skb->len is
// short of the MAC header; a frame of no more than mtu bytes is short
// enough either way, without the two helper calls of mac_gap. The MAC
// header test is for received frames: a sent one's data starts with it.
static __always_inline int measure_tc(struct frame *f)
{
	struct __sk_buff *skb = f->ctx;
	f->len = skb->len;
	if (!capture_all && f->len <= mtu)
		return 0;
	f->gap = outbound ? 0 : mac_gap(skb);
	f->len += f->gap;
	return 1;
}

// The kernel's socket buffer, as far as tunnel_segment_l3 reads it; CO-RE
// finds each field where the running kernel has it.
struct sk_buff___ringcap {
	__u8 encapsulation : 1;
	__u16 inner_transport_header;
	__u16 inner_network_header;
	__u16 network_header;
} __attribute__((preserve_access_index));

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;

// tunnel_segment_l3 is the L3 length of the frames an encapsulated GSO
// packet (VXLAN, Geneve, GRE...) or GRO packet becomes on the wire, or 0
// for a packet that is not encapsulated, or where it cannot be read. The
// outer headers, the tunnel's and the inner ones up to the inner
// transport header are where the kernel's offsets say; then the inner
// TCP or UDP header and gso_size bytes of payload. The kernel counts the
// same (skb_gso_network_seglen), but for an inner UDP header. Only the
// kernel's socket buffer says that a packet is encapsulated: reading it
// takes CAP_PERFMON, and bpf_cast_to_kern_ctx() (Linux 6.2).
static __always_inline __u32 tunnel_segment_l3(struct __sk_buff *skb)
{
	if (!kernel_skb || !bpf_cast_to_kern_ctx)
		return 0;
	struct sk_buff___ringcap *k = bpf_cast_to_kern_ctx(skb);
	// A kernel that lays the socket buffer out otherwise keeps the
	// program loading, judging such packets by their outer headers.
	if (!bpf_core_field_exists(k->encapsulation) || !bpf_core_field_exists(k->inner_network_header) ||
	    !bpf_core_field_exists(k->inner_transport_header) || !bpf_core_field_exists(k->network_header))
		return 0;
	if (!BPF_CORE_READ_BITFIELD(k, encapsulation))
		return 0;
	__u16 net = k->network_header, inner_net = k->inner_network_header, inner_l4 = k->inner_transport_header;
	if (inner_net <= net || inner_l4 <= inner_net)
		return 0;
	// The inner IP header's protocol, then the TCP header's length,
	// read relative to the outer network header.
	__u8 b[2];
	if (bpf_skb_load_bytes_relative(skb, inner_net - net, b, 1, BPF_HDR_START_NET) < 0)
		return 0;
	__u32 proto_at = (b[0] >> 4) == 6 ? 6 : 9;
	if (bpf_skb_load_bytes_relative(skb, inner_net - net + proto_at, b + 1, 1, BPF_HDR_START_NET) < 0)
		return 0;
	__u32 l4 = 0;
	if (b[1] == IPPROTO_UDP)
		l4 = 8;
	else if (b[1] == IPPROTO_TCP && bpf_skb_load_bytes_relative(skb, inner_l4 - net + 12, b, 1, BPF_HDR_START_NET) == 0)
		l4 = (b[0] >> 4) * 4;
	return (inner_l4 - net) + l4 + skb->gso_size;
}

// segment_l3 is the L3 length of the frames a GSO packet becomes on the
// wire: its IP and TCP/UDP headers, and gso_size bytes of payload. net is
// the network header's offset in the socket buffer's data.
// IPv6 extension headers are not followed: they are rare in GSO packets,
// and missing them only makes the length a few bytes shorter.
static __always_inline __u32 segment_l3(struct __sk_buff *skb, __u32 net, __u32 gap)
{
	__u8 b[2];
	__u32 ip, l4 = 0, proto;
	__u32 l2 = net;
	__u16 ethertype;

	// The EtherType after any tags in the frame's bytes; behind generic
	// XDP, where the data holds no MAC header, the stack's own.
	if (gap)
		ethertype = bpf_ntohs(skb->protocol);
	else if (bpf_skb_load_bytes(skb, l2 - 2, b, 2) < 0)
		return skb->gso_size;
	else
		ethertype = (__u16)b[0] << 8 | b[1];
	if (ethertype == ETH_P_IP) {
		if (bpf_skb_load_bytes(skb, l2, b, 1) < 0 || bpf_skb_load_bytes(skb, l2 + 9, b + 1, 1) < 0)
			return skb->gso_size;
		ip = (b[0] & 0xf) * 4;
	} else if (ethertype == ETH_P_IPV6) {
		if (bpf_skb_load_bytes(skb, l2 + 6, b + 1, 1) < 0)
			return skb->gso_size;
		ip = 40;
	} else {
		return skb->gso_size;
	}
	proto = b[1];
	if (proto == IPPROTO_UDP)
		l4 = 8;
	else if (proto == IPPROTO_TCP && bpf_skb_load_bytes(skb, l2 + ip + 12, b, 1) == 0)
		l4 = (b[0] >> 4) * 4;
	return ip + l4 + skb->gso_size;
}

// segment_tc: at tc egress a TSO send is one packet of up to 64 KiB; the
// wire carries frames of gso_size bytes of payload each. GSO_BY_FRAGS
// (SCTP) gives no size: such a packet is judged by its length.
static __always_inline __u32 segment_tc(const struct frame *f, __u32 l2)
{
	struct __sk_buff *skb = f->ctx;
	if (!skb->gso_size || skb->gso_size == GSO_BY_FRAGS)
		return 0;
	__u32 seg = tunnel_segment_l3(skb);
	return seg ? seg : segment_l3(skb, l2 - f->gap, f->gap);
}

// describe_tc: the socket buffer holds the tag the driver or the stack
// took out of the frame.
static __always_inline void describe_tc(struct frame *f)
{
	struct __sk_buff *skb = f->ctx;
	if (skb->vlan_present)
		f->vlan = (__u32)bpf_ntohs(skb->vlan_proto) << 16 | (skb->vlan_tci & 0xffff);
}

static __always_inline void *first_buffer_tc(const struct frame *f, void **end)
{
	*end = (void *)(long)((struct __sk_buff *)f->ctx)->data_end;
	return (void *)(long)((struct __sk_buff *)f->ctx)->data;
}

static __always_inline int filter_tc(const struct frame *f, __u64 frame_len)
{
	return ringcap_filter_tc(f->ctx, frame_len, f->vlan, f->gap);
}

static __always_inline long load_skb(const struct frame *f, __u32 off, void *to, __u32 len)
{
	return bpf_skb_load_bytes(f->ctx, off, to, len);
}

static __always_inline long load_skb_mac(const struct frame *f, __u32 off, void *to, __u32 len)
{
	if (f->gap)
		return bpf_skb_load_bytes_relative(f->ctx, off, to, len, BPF_HDR_START_MAC);
	return bpf_skb_load_bytes(f->ctx, off, to, len);
}

static const struct hook tc_hook = {
	.measure = measure_tc,
	.first_buffer = first_buffer_tc,
	.segment_l3 = segment_tc,
	.describe = describe_tc,
	.filter = filter_tc,
	.load = load_skb,
	.load_mac = load_skb_mac,
};

SEC("tc")
int ringcap_tc(struct __sk_buff *skb)
{
	// A replay's test run names the slot in cb[0].
	struct frame f = {.ctx = skb, .slot = replay ? skb->cb[0] : hook_slot(skb->ifindex)};
	capture(&tc_hook, &f);
	return TCX_NEXT;
}
