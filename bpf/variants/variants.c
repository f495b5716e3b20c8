//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// The benchmark variants of ringcap's XDP program: each undoes one choice
// of ../ringcap.c, so that the benchmarks in package bpf measure what the
// choice is worth. ringcap never loads them. They reuse ringcap.c's
// helpers and differ only in how a selected frame reaches the ring.

#include "../ringcap.c"

#define RESERVE_FIRST 0 // reserve before the length test, discard if unwanted
#define NO_ROOM_CHECK 1 // reserve without looking at the fill level first
#define SNAPLEN 2       // a record of a whole snap length, whatever the frame
#define CLASSES 3       // the smallest power of two that holds the frame
#define DYNPTR 4        // exactly the frame, through a dynptr reservation
#define OUTPUT 5        // exactly the frame, always through scratch
#define SLOT_HASH 6     // the slot found in a hash by interface index, for every index

// events is the one ring of ringcap before its rings were sharded: a
// RINGBUF shared by every CPU, referenced directly (see shared_ring).
// Each program loaded from this object gets one of its own; the
// benchmarks size it, and find it from the program's maps.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096); // replaced from Go by ring_size
} events SEC(".maps");

// own_ring is the ring of this CPU, as ringcap's ring_with_room finds it
// first.
static __always_inline void *own_ring(void)
{
	__u32 zero = 0;
	struct ring_choice *choice = bpf_map_lookup_elem(&cpu_ring, &zero);
	if (!choice)
		return NULL;
	__u32 home = choice->home;
	return bpf_map_lookup_elem(&rings, &home);
}

extern int bpf_dynptr_from_xdp(struct xdp_md *x, __u64 flags, struct bpf_dynptr *ptr__uninit) __ksym;
extern int bpf_dynptr_copy(struct bpf_dynptr *dst_ptr, __u32 dst_off, struct bpf_dynptr *src_ptr, __u32 src_off,
			   __u32 size) __ksym;

// frame_of is the frame of a variant, all of whose frames the benchmarks
// map to slot 0.
static __always_inline struct frame frame_of(struct xdp_md *ctx)
{
	return (struct frame){.ctx = ctx, .rx_queue = ctx->rx_queue_index};
}

static __always_inline void submit(struct xdp_md *ctx, void *ring, struct iface_counters *cnt, struct event *ev,
				   __u64 cap, __u64 frame_len, __u64 wakeup)
{
	if (bpf_xdp_load_bytes(ctx, 0, (void *)(ev + 1), cap) < 0) {
		bpf_ringbuf_discard(ev, 0);
		cnt->reserve_failed++;
		return;
	}
	struct frame f = frame_of(ctx);
	fill_event(ev, &f, cnt, frame_len, cap);
	bpf_ringbuf_submit(ev, wakeup);
	cnt->written++;
}

static __always_inline void reserve_snaplen(struct xdp_md *ctx, void *ring, struct iface_counters *cnt, __u64 cap,
					    __u64 frame_len, const int check_room)
{
	__u64 wakeup = 0;
	if (check_room && !room(ring, snaplen, ring_size, &wakeup)) {
		cnt->ring_full++;
		return;
	}
	struct event *ev = bpf_ringbuf_reserve(ring, sizeof(*ev) + snaplen, 0);
	if (!ev) {
		cnt->reserve_failed++;
		return;
	}
	submit(ctx, ring, cnt, ev, cap, frame_len, wakeup);
}

// The verifier wants a constant reserve size, so each class is a reserve
// of its own.
static __always_inline void reserve_class(struct xdp_md *ctx, void *ring, struct iface_counters *cnt, __u64 cap, __u64 frame_len)
{
	__u64 wakeup = 0;
	struct event *ev;
#define RESERVE_CLASS(n)                                                      \
	if (cap <= (n)) {                                                     \
		if (!room(ring, (n), ring_size, &wakeup)) {                   \
			cnt->ring_full++;                                     \
			return;                                               \
		}                                                             \
		ev = bpf_ringbuf_reserve(ring, sizeof(*ev) + (n), 0);         \
		goto reserved;                                                \
	}
	RESERVE_CLASS(64)
	RESERVE_CLASS(128)
	RESERVE_CLASS(256)
	RESERVE_CLASS(512)
	RESERVE_CLASS(1024)
	RESERVE_CLASS(2048)
	RESERVE_CLASS(4096)
	RESERVE_CLASS(8192)
	RESERVE_CLASS(16384)
	RESERVE_CLASS(32768)
	RESERVE_CLASS(65536)
	return;
reserved:
	if (!ev) {
		cnt->reserve_failed++;
		return;
	}
	submit(ctx, ring, cnt, ev, cap, frame_len, wakeup);
}

static __always_inline void reserve_dynptr(struct xdp_md *ctx, void *ring, struct iface_counters *cnt, __u64 cap, __u64 frame_len)
{
	__u64 wakeup = 0;
	struct bpf_dynptr rec, pkt;
	if (!room(ring, cap, ring_size, &wakeup)) {
		cnt->ring_full++;
		return;
	}
	// A failed reservation must be discarded too.
	if (bpf_ringbuf_reserve_dynptr(ring, sizeof(struct event) + cap, 0, &rec) < 0) {
		bpf_ringbuf_discard_dynptr(&rec, 0);
		cnt->reserve_failed++;
		return;
	}
	struct event *ev = bpf_dynptr_data(&rec, 0, sizeof(*ev));
	if (!ev || bpf_dynptr_from_xdp(ctx, 0, &pkt) < 0 || bpf_dynptr_copy(&rec, sizeof(*ev), &pkt, 0, cap) < 0) {
		bpf_ringbuf_discard_dynptr(&rec, 0);
		cnt->reserve_failed++;
		return;
	}
	struct frame f = frame_of(ctx);
	fill_event(ev, &f, cnt, frame_len, cap);
	bpf_ringbuf_submit_dynptr(&rec, wakeup);
	cnt->written++;
}

static __always_inline void output(struct xdp_md *ctx, void *ring, struct iface_counters *cnt, __u64 cap, __u64 frame_len)
{
	__u64 wakeup = 0;
	if (!room(ring, cap, ring_size, &wakeup)) {
		cnt->ring_full++;
		return;
	}
	__u32 cpu = bpf_get_smp_processor_id();
	struct event *ev = bpf_map_lookup_elem(&scratch, &cpu);
	if (!ev || bpf_xdp_load_bytes(ctx, 0, (void *)(ev + 1), cap) < 0) {
		cnt->reserve_failed++;
		return;
	}
	struct frame f = frame_of(ctx);
	fill_event(ev, &f, cnt, frame_len, cap);
	if (bpf_ringbuf_output(ring, ev, sizeof(*ev) + cap, wakeup) < 0) {
		cnt->reserve_failed++;
		return;
	}
	cnt->written++;
}

// variant is ringcap's multi-buffer capture with one choice changed.
static __always_inline int variant(struct xdp_md *ctx, const int choice)
{
	// As ringcap's, which the benchmarks map to slot 0.
	__u32 key;
	if (choice == SLOT_HASH) {
		__u32 index_key = ctx->ingress_ifindex << 1;
		__u32 *slot = bpf_map_lookup_elem(&large_index_slots, &index_key);
		key = slot ? *slot : 0;
	} else {
		key = xdp_slot(ctx);
	}
	if (!key--)
		return XDP_PASS;
	struct iface_counters *cnt = bpf_map_lookup_elem(&counters, &key);
	if (!cnt)
		return XDP_PASS;
	cnt->seen++;

	struct event *ev = NULL;
	void *ring = NULL;
	if (choice == RESERVE_FIRST) {
		// The pattern ringcap avoids: the ring's lock is taken for
		// every frame, wanted or not.
		ring = own_ring();
		if (!ring)
			return XDP_PASS;
		ev = bpf_ringbuf_reserve(ring, sizeof(*ev) + snaplen, 0);
		if (!ev)
			return XDP_PASS;
	}
	struct frame f = frame_of(ctx);
	measure_frags(&f);
	__u64 frame_len = f.len;
	__u64 cap = frame_len < snaplen ? frame_len : snaplen;
	if (!selected(&xdp_frags, &f) || cap < 1 || cap > snaplen) {
		if (ev)
			bpf_ringbuf_discard(ev, 0);
		return XDP_PASS;
	}
	cnt->selected++;
	if (ev) {
		submit(ctx, ring, cnt, ev, cap, frame_len, 0);
		return XDP_PASS;
	}
	ring = own_ring();
	if (!ring) {
		cnt->reserve_failed++;
		return XDP_PASS;
	}
	switch (choice) {
	case NO_ROOM_CHECK:
		reserve_snaplen(ctx, ring, cnt, cap, frame_len, 0);
		break;
	case SNAPLEN:
		reserve_snaplen(ctx, ring, cnt, cap, frame_len, 1);
		break;
	case CLASSES:
		reserve_class(ctx, ring, cnt, cap, frame_len);
		break;
	case DYNPTR:
		reserve_dynptr(ctx, ring, cnt, cap, frame_len);
		break;
	case OUTPUT:
		output(ctx, ring, cnt, cap, frame_len);
		break;
	}
	return XDP_PASS;
}

SEC("xdp.frags")
int reserve_first(struct xdp_md *ctx)
{
	return variant(ctx, RESERVE_FIRST);
}

SEC("xdp.frags")
int no_room_check(struct xdp_md *ctx)
{
	return variant(ctx, NO_ROOM_CHECK);
}

SEC("xdp.frags")
int record_snaplen(struct xdp_md *ctx)
{
	return variant(ctx, SNAPLEN);
}

SEC("xdp.frags")
int record_classes(struct xdp_md *ctx)
{
	return variant(ctx, CLASSES);
}

SEC("xdp.frags")
int record_dynptr(struct xdp_md *ctx)
{
	return variant(ctx, DYNPTR);
}

SEC("xdp.frags")
int record_output(struct xdp_md *ctx)
{
	return variant(ctx, OUTPUT);
}

SEC("xdp.frags")
int slot_hash(struct xdp_md *ctx)
{
	return variant(ctx, SLOT_HASH);
}

// shared_write_record is write_record as it was before the rings were
// sharded: the free-space test and the write go to events, with no
// lookup of the CPU's ring choice or of a ring in the table of rings.
static __always_inline void shared_write_record(const struct frame *f, struct iface_counters *cnt, __u64 cap,
						__u64 frame_len)
{
	__u64 wakeup = 0;
	if (!room(&events, cap, ring_size, &wakeup)) {
		cnt->ring_full++;
		return;
	}
	write_into(&events, wakeup, &xdp_frags, f, cnt, cap, frame_len);
}

// shared_capture is capture() of the multi-buffer build (ringcap_xdp:
// the xdp_frags hook), step for step, writing with shared_write_record:
// the baseline the sharded rings are measured against.
static __always_inline void shared_capture(struct xdp_md *ctx)
{
	struct frame f = {.ctx = ctx, .slot = xdp_slot(ctx)};
	if (!f.slot--)
		return;
	__u32 slot = f.slot;
	struct iface_counters *cnt = bpf_map_lookup_elem(&counters, &slot);
	if (!cnt)
		return;
	cnt->seen++;
	if (!measure_frags(&f) || !selected(&xdp_frags, &f))
		return;
	describe_xdp(&f);
	__u64 frame_len = f.len + (f.vlan ? VLAN_TAG_LEN : 0);
	__u64 cap = frame_len < snaplen ? frame_len : snaplen;
	if (cap < 1 || cap > snaplen)
		return;
	if (!filter_xdp(&f, frame_len))
		return;
	cnt->selected++;
	shared_write_record(&f, cnt, cap, frame_len);
}

SEC("xdp.frags")
int shared_ring(struct xdp_md *ctx)
{
	shared_capture(ctx);
	return XDP_PASS;
}
