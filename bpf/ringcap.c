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
// starve. One capture core, capture(), serves every hook; its kind argument
// is a compile-time constant, so each entry point is compiled with only its
// own hook's code:
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

// The hooks, compile-time constants of capture().
#define KIND_XDP 0
#define KIND_XDP_LINEAR 1
#define KIND_TC 2

extern int bpf_xdp_metadata_rx_vlan_tag(const struct xdp_md *ctx, __be16 *vlan_proto, __u16 *vlan_tci) __ksym;

static __always_inline void *frame_data(void *ctx, const int kind)
{
	if (kind == KIND_TC)
		return (void *)(long)((struct __sk_buff *)ctx)->data;
	return (void *)(long)((struct xdp_md *)ctx)->data;
}

static __always_inline void *frame_end(void *ctx, const int kind)
{
	if (kind == KIND_TC)
		return (void *)(long)((struct __sk_buff *)ctx)->data_end;
	return (void *)(long)((struct xdp_md *)ctx)->data_end;
}

// load_bytes reads across fragments (XDP) and the socket buffer's paged
// part (tc) alike.
static __always_inline long load_bytes(void *ctx, const int kind, __u32 off, void *to, __u32 len)
{
	if (kind == KIND_TC)
		return bpf_skb_load_bytes(ctx, off, to, len);
	return bpf_xdp_load_bytes(ctx, off, to, len);
}

static __always_inline int is_vlan(__u16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

// vlan_tags counts the 802.1Q/802.1ad tags (at most two) in the frame's
// bytes. Tags sit in the first buffer of any real frame; a tag that is
// not there is not counted.
static __always_inline __u32 vlan_tags(void *ctx, const int kind)
{
	void *data_end = frame_end(ctx, kind);
	__u16 *proto = frame_data(ctx, kind) + 12;
	__u32 tags = 0;

	if ((void *)(proto + 1) > data_end || !is_vlan(*proto))
		return 0;
	tags++;
	proto += 2;
	if ((void *)(proto + 1) <= data_end && is_vlan(*proto))
		tags++;
	return tags;
}

// mac_gap is 0 where a tc program's data starts at the MAC header, as it
// does at tc, and ETH_HDR_LEN where it starts at the network header: at
// tcx ingress behind a generic-mode XDP program, Linux 6.18 leaves the
// socket buffer's mac_len at 0 and tc pushes back nothing. The MAC header
// is still where skb_mac_header() says (tcpdump reads it there), and so
// is read relative to it.
static __always_inline __u32 mac_gap(struct __sk_buff *skb)
{
	__u64 mac[2] = {}, pkt[2] = {};
	void *data = frame_data(skb, KIND_TC);
	if (data + ETH_HDR_LEN > frame_end(skb, KIND_TC) ||
	    bpf_skb_load_bytes_relative(skb, 0, mac, ETH_HDR_LEN, BPF_HDR_START_MAC) < 0)
		return 0;
	__builtin_memcpy(pkt, data, ETH_HDR_LEN);
	return mac[0] == pkt[0] && mac[1] == pkt[1] ? 0 : ETH_HDR_LEN;
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

// replay_slot is the slot plus one that a replay's test run names: in the
// first four bytes of XDP metadata, or in the socket buffer's cb[0].
static __always_inline __u32 replay_slot(void *ctx, const int kind)
{
	if (kind == KIND_TC)
		return ((struct __sk_buff *)ctx)->cb[0];
	struct xdp_md *xdp = ctx;
	__u32 *meta = (void *)(long)xdp->data_meta;
	if ((void *)(meta + 1) > (void *)(long)xdp->data)
		return 0;
	return *meta;
}

// hook_slot is the slot plus one of the hook the frame came through: of
// its interface, in the instance's direction; 0 if ringcap does not
// capture there.
static __always_inline __u32 hook_slot(void *ctx, const int kind)
{
	if (replay)
		return replay_slot(ctx, kind);
	__u32 index = kind == KIND_TC ? ((struct __sk_buff *)ctx)->ifindex : ((struct xdp_md *)ctx)->ingress_ifindex;
	__u32 *slot = bpf_map_lookup_elem(outbound ? (void *)&outbound_slots : (void *)&inbound_slots, &index);
	if (!slot) {
		__u32 key = index << 1 | outbound;
		slot = bpf_map_lookup_elem(&large_index_slots, &key);
	}
	return slot ? *slot : 0;
}

// selected says whether the frame's length asks for it. len is the
// frame's bytes from its MAC header, without an offloaded tag: a tag
// changes no L3 length. gap is mac_gap's.
static __always_inline int selected(void *ctx, const int kind, __u64 len, __u32 gap)
{
	if (capture_all)
		return 1;
	// Tags only make the L3 length smaller, so a frame whose untagged L3
	// length fits the MTU is dropped from consideration without reading
	// a byte of it; so is a GSO packet, longer than any of its frames.
	if (len <= ETH_HDR_LEN + (__u64)mtu)
		return 0;
	// Behind generic XDP the stack has taken the outer tag out already
	// (it untags before tc), and the data holds no MAC header to count
	// tags in.
	__u32 l2 = ETH_HDR_LEN + (gap ? 0 : VLAN_TAG_LEN * vlan_tags(ctx, kind));
	// At tc egress a TSO send is one packet of up to 64 KiB; the wire
	// carries frames of gso_size bytes of payload each. GSO_BY_FRAGS
	// (SCTP) gives no size: such a packet is judged by its length.
	__u32 gso_size = kind == KIND_TC ? ((struct __sk_buff *)ctx)->gso_size : 0;
	if (gso_size && gso_size != GSO_BY_FRAGS) {
		__u32 seg = tunnel_segment_l3(ctx);
		return (seg ? seg : segment_l3(ctx, l2 - gap, gap)) > mtu;
	}
	return len - l2 > mtu;
}

// offloaded_tag returns the VLAN tag taken out of the frame before the
// hook, as TPID << 16 | TCI, or 0 if there is none.
static __always_inline __u32 offloaded_tag(void *ctx, const int kind, const int tag)
{
	if (kind == KIND_TC) {
		struct __sk_buff *skb = ctx;
		if (!skb->vlan_present)
			return 0;
		return (__u32)bpf_ntohs(skb->vlan_proto) << 16 | (skb->vlan_tci & 0xffff);
	}
	if (!tag)
		return 0;
	__be16 proto;
	__u16 tci;
	if (bpf_xdp_metadata_rx_vlan_tag(ctx, &proto, &tci) < 0)
		return 0;
	return (__u32)bpf_ntohs(proto) << 16 | tci;
}

// copy_rest copies the frame's bytes from data offset off to dst + front,
// up to cap bytes of record. front is a constant, which lets the verifier
// see the copy within the record.
static __always_inline long copy_rest(void *ctx, const int kind, void *dst, __u64 cap, const __u32 front, __u32 off)
{
	__u64 rest = cap - front;
	if (cap < front || rest > snaplen - front)
		return -1;
	if (rest == 0)
		return 0;
	return load_bytes(ctx, kind, off, dst + front, rest);
}

// copy_frame copies the frame's first cap bytes to dst, with the tag vlan
// (if not 0) put back after the MAC addresses, as libpcap does for
// tcpdump, and the MAC header read where it is if gap says the data does
// not start with it. It cannot fail for cap <= the frame's length; if it
// did, the caller counts the frame with the reserve failures, so that
// selected = written + ring_full + reserve_failed always holds.
static __always_inline long copy_frame(void *ctx, const int kind, void *dst, __u64 cap, __u32 vlan, __u32 gap)
{
	const int mac_apart = kind == KIND_TC && gap;
	if (!vlan && !mac_apart)
		return load_bytes(ctx, kind, 0, dst, cap);
	if (!vlan) {
		// The MAC header, or as much of it as the snap length keeps,
		// then the data.
		if (cap < ETH_HDR_LEN)
			return bpf_skb_load_bytes_relative(ctx, 0, dst, cap, BPF_HDR_START_MAC);
		if (bpf_skb_load_bytes_relative(ctx, 0, dst, ETH_HDR_LEN, BPF_HDR_START_MAC) < 0)
			return -1;
		return copy_rest(ctx, kind, dst, cap, ETH_HDR_LEN, 0);
	}
	// The addresses, the tag and the rest, as far as cap reaches.
	__u64 addrs = cap < ETH_ADDRS_LEN ? cap : ETH_ADDRS_LEN;
	if (addrs < 1 || (mac_apart ? bpf_skb_load_bytes_relative(ctx, 0, dst, addrs, BPF_HDR_START_MAC)
				    : load_bytes(ctx, kind, 0, dst, addrs)) < 0)
		return -1;
	__u32 tag = bpf_htonl(vlan);
	for (int i = 0; i < VLAN_TAG_LEN; i++)
		if (cap > ETH_ADDRS_LEN + i)
			((__u8 *)dst)[ETH_ADDRS_LEN + i] = ((__u8 *)&tag)[i];
	if (cap <= ETH_ADDRS_LEN + VLAN_TAG_LEN)
		return 0;
	if (!mac_apart)
		return copy_rest(ctx, kind, dst, cap, ETH_ADDRS_LEN + VLAN_TAG_LEN, ETH_ADDRS_LEN);
	// The EtherType from the MAC header, then the data.
	if (cap == ETH_HDR_LEN + VLAN_TAG_LEN - 1)
		return bpf_skb_load_bytes_relative(ctx, ETH_ADDRS_LEN, dst + ETH_ADDRS_LEN + VLAN_TAG_LEN, 1, BPF_HDR_START_MAC);
	if (bpf_skb_load_bytes_relative(ctx, ETH_ADDRS_LEN, dst + ETH_ADDRS_LEN + VLAN_TAG_LEN, 2, BPF_HDR_START_MAC) < 0)
		return -1;
	return copy_rest(ctx, kind, dst, cap, ETH_HDR_LEN + VLAN_TAG_LEN, 0);
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

static __always_inline void fill_event(struct event *ev, void *ctx, const int kind, __u32 slot,
				       struct iface_counters *cnt, __u64 frame_len, __u64 cap)
{
	ev->ts_ns = bpf_ktime_get_ns();
	ev->slot = slot;
	ev->rx_queue = kind == KIND_TC ? 0 : ((struct xdp_md *)ctx)->rx_queue_index;
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
static __always_inline void write_into(void *ring, __u64 wakeup, void *ctx, const int kind, __u32 slot,
				       struct iface_counters *cnt, __u64 cap, __u64 frame_len, __u32 vlan, __u32 gap)
{
	struct event *ev;

	if (cap == snaplen) {
		ev = bpf_ringbuf_reserve(ring, sizeof(*ev) + snaplen, 0);
		if (!ev) {
			cnt->reserve_failed++;
			return;
		}
		if (copy_frame(ctx, kind, (void *)(ev + 1), cap, vlan, gap) < 0) {
			bpf_ringbuf_discard(ev, 0);
			cnt->reserve_failed++;
			return;
		}
		fill_event(ev, ctx, kind, slot, cnt, frame_len, cap);
		bpf_ringbuf_submit(ev, wakeup);
		cnt->written++;
		return;
	}
	__u32 cpu = bpf_get_smp_processor_id();
	ev = bpf_map_lookup_elem(&scratch, &cpu);
	if (!ev || copy_frame(ctx, kind, (void *)(ev + 1), cap, vlan, gap) < 0) {
		cnt->reserve_failed++;
		return;
	}
	fill_event(ev, ctx, kind, slot, cnt, frame_len, cap);
	if (bpf_ringbuf_output(ring, ev, sizeof(*ev) + cap, wakeup) < 0) {
		cnt->reserve_failed++;
		return;
	}
	cnt->written++;
}

// write_record writes the frame into the ring of ring_with_room.
static __always_inline void write_record(void *ctx, const int kind, __u32 slot, struct iface_counters *cnt,
					 __u64 cap, __u64 frame_len, __u32 vlan, __u32 gap)
{
	__u64 wakeup = 0;
	void *ring = ring_with_room(cnt, cap, &wakeup);
	if (ring)
		write_into(ring, wakeup, ctx, kind, slot, cnt, cap, frame_len, vlan, gap);
}

// ringcap_filter_xdp and ringcap_filter_tc are the user's filter expression
// (--filter) for each context. The loader (bpf/filter.go) replaces the body
// with the expression, compiled by libpcap and translated to eBPF; without
// one it stays as it is and every frame matches. len is the frame's length
// as recorded and vlan the tag put back, which the expression must see;
// gap is mac_gap's (tc only).
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

// capture is the whole program. kind is the hook; tag says the program is
// bound to its device and may ask the driver for an offloaded tag.
static __always_inline void capture(void *ctx, const int kind, const int tag)
{
	__u32 slot = hook_slot(ctx, kind);
	// An interface that is no hook of this capture's (yet), or no longer.
	if (!slot--)
		return;
	struct iface_counters *cnt = bpf_map_lookup_elem(&counters, &slot);
	if (!cnt)
		return;
	cnt->seen++;

	__u64 len;
	__u32 gap = 0;
	if (kind == KIND_TC) {
		len = ((struct __sk_buff *)ctx)->len;
		// Where the data starts at the network header, len is short
		// of the MAC header; a frame of no more than mtu bytes is
		// short enough either way.
		if (!capture_all && len <= mtu)
			return;
		gap = outbound ? 0 : mac_gap(ctx);
		len += gap;
	} else if (kind == KIND_XDP_LINEAR) {
		// A single-buffer frame ends at data_end, so the unwanted ones
		// are told apart without bpf_xdp_get_buff_len(). The verifier
		// allows a register offset on a packet pointer only with
		// CAP_PERFMON (a Spectre v1 guard): capture loads this build
		// only then.
		void *data = frame_data(ctx, kind);
		void *data_end = frame_end(ctx, kind);
		if (!capture_all && (mtu > 0xffff || data + ETH_HDR_LEN + mtu >= data_end))
			return;
		len = data_end - data;
	} else {
		len = bpf_xdp_get_buff_len(ctx);
	}
	if (!selected(ctx, kind, len, gap))
		return;

	// From here on the frame is what the file will hold: the tag put
	// back is seen by the expression and counted in the length.
	__u32 vlan = offloaded_tag(ctx, kind, tag);
	__u64 frame_len = len + (vlan ? VLAN_TAG_LEN : 0);
	// The verifier needs the copy length proven within [1, snaplen]:
	// clamp in unsigned arithmetic. Frames are never shorter than an
	// Ethernet header, so cap is never 0.
	__u64 cap = frame_len < snaplen ? frame_len : snaplen;
	if (cap < 1 || cap > snaplen)
		return;
	// The expression runs only for frames the length test kept, and
	// before anything touches the ring.
	if (kind == KIND_TC ? !ringcap_filter_tc(ctx, frame_len, vlan, gap) : !ringcap_filter_xdp(ctx, frame_len, vlan))
		return;
	cnt->selected++;
	write_record(ctx, kind, slot, cnt, cap, frame_len, vlan, gap);
}

SEC("xdp")
int ringcap_linear(struct xdp_md *ctx)
{
	capture(ctx, KIND_XDP_LINEAR, 0);
	return XDP_PASS;
}

SEC("xdp.frags")
int ringcap_xdp(struct xdp_md *ctx)
{
	capture(ctx, KIND_XDP, 0);
	return XDP_PASS;
}

SEC("xdp")
int ringcap_lin_tag(struct xdp_md *ctx)
{
	capture(ctx, KIND_XDP_LINEAR, 1);
	return XDP_PASS;
}

SEC("xdp.frags")
int ringcap_xdp_tag(struct xdp_md *ctx)
{
	capture(ctx, KIND_XDP, 1);
	return XDP_PASS;
}

SEC("tc")
int ringcap_tc(struct __sk_buff *skb)
{
	capture(skb, KIND_TC, 0);
	return TCX_NEXT;
}
