//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// ringcap's XDP program: passes every frame on untouched and copies the
// first snaplen bytes of the frames the user asked for into a ring buffer.
// Every instruction before the first "return XDP_PASS" runs for every frame
// on the interface, so that path is kept to a per-CPU counter, the frame's
// length and a compare.
//
// It comes in two builds of one body. ringcap_linear is a plain "xdp"
// program: the kernel only ever hands it single-buffer frames (drivers
// refuse to attach it where they would build multi-buffer ones), so a
// frame ends at data_end. ringcap_xdp is "xdp.frags" and must ask
// bpf_xdp_get_buff_len() for the length of all fragments, a helper call
// that is most of what a frame nobody asked for costs above a no-op
// program. capture attaches the first where the driver takes it.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

// Load-time constants, set from Go before the program is loaded. The
// verifier treats them as known values, which is what lets the reserve size
// and the copy length below pass its checks.
volatile const __u32 mtu = 1500;
volatile const __u32 capture_all = 0;
volatile const __u32 snaplen = 256;
volatile const __u64 ring_size = 8 << 20;
// Fill level from which a submit wakes the reader; see capture_frame.
volatile const __u64 wakeup_bytes = 2 << 20;
// Index of this program's counters: one program instance is loaded per
// interface so that the counter lookup needs no hash of the ifindex.
volatile const __u32 slot = 0;

// event is the fixed header of every ring record; snaplen bytes of frame
// follow it, of which cap_len are valid.
struct event {
	__u64 ts_ns;     // bpf_ktime_get_ns(): CLOCK_MONOTONIC
	__u32 ifindex;
	__u32 rx_queue;
	__u32 frame_len; // all fragments
	__u32 cap_len;   // min(frame_len, snaplen)
	// This interface's frames lost on this CPU so far (ring_full +
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

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); // replaced from Go by --ring-size
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct iface_counters);
	__uint(max_entries, 1); // replaced from Go by the number of interfaces
} counters SEC(".maps");

#ifdef RINGCAP_VARIANTS
// For the per_cpu_ring variant: one ring per CPU, instead of events.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1); // replaced from Go by the number of CPUs
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_RINGBUF);
		__uint(max_entries, 8 << 20);
	});
} cpu_rings SEC(".maps");
#endif

#define ETH_HDR_LEN 14
#define VLAN_TAG_LEN 4
// Every ring record carries an 8-byte header (BPF_RINGBUF_HDR_SZ) and is
// rounded up to 8 bytes.
#define RINGBUF_HDR_LEN 8

static __always_inline int is_vlan(__u16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

// vlan_tags counts the 802.1Q/802.1ad tags (at most two) at the start of
// the frame. Tags sit in the first fragment of any real frame; a tag that
// is not in the linear part is not counted.
static __always_inline __u32 vlan_tags(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u16 *proto = data + 12;
	__u32 tags = 0;

	if ((void *)(proto + 1) > data_end || !is_vlan(*proto))
		return 0;
	tags++;
	proto += 2;
	if ((void *)(proto + 1) <= data_end && is_vlan(*proto))
		tags++;
	return tags;
}

// selected says whether the user asked for this frame.
static __always_inline int selected(struct xdp_md *ctx, __u64 frame_len)
{
	if (capture_all)
		return 1;
	// Tags only make the L3 length smaller, so a frame whose untagged L3
	// length fits the MTU is dropped from consideration without reading
	// a byte of it.
	if (frame_len <= ETH_HDR_LEN + (__u64)mtu)
		return 0;
	return frame_len - ETH_HDR_LEN - VLAN_TAG_LEN * vlan_tags(ctx) > mtu;
}

// room says whether a record carrying size bytes of frame fits in the
// ring, counting the frame as ring_full if not, and sets the submit's
// wakeup flag.
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
// within its idle wait.
static __always_inline int room(void *ring, struct iface_counters *cnt, __u64 size, __u64 *wakeup)
{
	__u64 record = (RINGBUF_HDR_LEN + sizeof(struct event) + size + 7) & ~7ULL;
	__u64 fill = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) + record;
	if (fill >= ring_size) {
		cnt->ring_full++;
		return 0;
	}
	*wakeup = fill >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	return 1;
}

static __always_inline void fill_event(struct event *ev, struct xdp_md *ctx, struct iface_counters *cnt, __u64 frame_len,
				       __u64 cap)
{
	ev->ts_ns = bpf_ktime_get_ns();
	ev->ifindex = ctx->ingress_ifindex;
	ev->rx_queue = ctx->rx_queue_index;
	ev->frame_len = frame_len;
	ev->cap_len = cap;
	// The counters are this CPU's, and this CPU's records reach the ring
	// in order: the reader takes differences per CPU.
	ev->drops = cnt->ring_full + cnt->reserve_failed;
	ev->cpu = bpf_get_smp_processor_id();
	ev->pad = 0;
}

// Ways to size a record, measured against each other in
// BenchmarkRecordSize: a whole snap length whatever the frame
// (RECORD_SNAPLEN, ringcap's first), the smallest of a few constant sizes
// that holds the frame (RECORD_CLASSES), exactly the frame, through a
// dynptr (RECORD_DYNPTR), or a copy from a per-CPU buffer
// (RECORD_OUTPUT).
#define RECORD_SNAPLEN 0
#define RECORD_CLASSES 1
#define RECORD_DYNPTR 2
#define RECORD_OUTPUT 3
// ringcap's choice: records of exactly the captured bytes on any kernel
// with ring buffers, and fewer ns than a dynptr for small frames; see the
// README.
#define RECORD_MODE RECORD_OUTPUT

// submit fills the reserved record ev with the frame's first cap bytes and
// its event header, and submits it.
//
// bpf_xdp_load_bytes() reads across fragments, so a snaplen longer than
// the first fragment still gets the bytes that follow. It cannot fail for
// cap <= frame_len; if it did, the frame is counted with the reserve
// failures so that selected = written + ring_full + reserve_failed always
// holds.
static __always_inline int submit(struct xdp_md *ctx, struct iface_counters *cnt, struct event *ev, __u64 cap,
				  __u64 frame_len, __u64 wakeup)
{
	if (bpf_xdp_load_bytes(ctx, 0, (void *)(ev + 1), cap) < 0) {
		bpf_ringbuf_discard(ev, 0);
		cnt->reserve_failed++;
		return XDP_PASS;
	}
	fill_event(ev, ctx, cnt, frame_len, cap);
	bpf_ringbuf_submit(ev, wakeup);
	cnt->written++;
	return XDP_PASS;
}

// write_snaplen writes a record of a whole snap length: into ev if the
// caller reserved it already (the reserve_first variant), else into one
// reserved here.
static __always_inline int write_snaplen(struct xdp_md *ctx, void *ring, struct iface_counters *cnt, struct event *ev,
					 __u64 cap, __u64 frame_len, const int check_room)
{
	__u64 wakeup = 0;
	if (!ev) {
		if (check_room && !room(ring, cnt, snaplen, &wakeup))
			return XDP_PASS;
		ev = bpf_ringbuf_reserve(ring, sizeof(*ev) + snaplen, 0);
		if (!ev) {
			cnt->reserve_failed++;
			return XDP_PASS;
		}
	}
	return submit(ctx, cnt, ev, cap, frame_len, wakeup);
}

// write_class writes a record of the smallest power of two from 64 bytes
// up that holds the frame: the verifier wants a constant reserve size, so
// each size is a reserve of its own.
static __always_inline int write_class(struct xdp_md *ctx, void *ring, struct iface_counters *cnt, __u64 cap, __u64 frame_len)
{
	__u64 wakeup = 0;
	struct event *ev;
#define RESERVE_CLASS(n)                                                      \
	if (cap <= (n)) {                                                     \
		if (!room(ring, cnt, (n), &wakeup))                           \
			return XDP_PASS;                                      \
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
	return XDP_PASS;
reserved:
	if (!ev) {
		cnt->reserve_failed++;
		return XDP_PASS;
	}
	return submit(ctx, cnt, ev, cap, frame_len, wakeup);
}

extern int bpf_dynptr_from_xdp(struct xdp_md *x, __u64 flags, struct bpf_dynptr *ptr__uninit) __ksym;
extern int bpf_dynptr_copy(struct bpf_dynptr *dst_ptr, __u32 dst_off, struct bpf_dynptr *src_ptr, __u32 src_off,
			   __u32 size) __ksym;

// write_dynptr writes a record of exactly the captured bytes: a dynptr
// reservation takes a size the verifier does not know, and
// bpf_dynptr_copy() copies across the frame's fragments into it.
static __always_inline int write_dynptr(struct xdp_md *ctx, void *ring, struct iface_counters *cnt, __u64 cap, __u64 frame_len)
{
	__u64 wakeup = 0;
	struct bpf_dynptr rec, pkt;
	if (!room(ring, cnt, cap, &wakeup))
		return XDP_PASS;
	// A failed reservation must be discarded too.
	if (bpf_ringbuf_reserve_dynptr(ring, sizeof(struct event) + cap, 0, &rec) < 0) {
		bpf_ringbuf_discard_dynptr(&rec, 0);
		cnt->reserve_failed++;
		return XDP_PASS;
	}
	struct event *ev = bpf_dynptr_data(&rec, 0, sizeof(*ev));
	if (!ev || bpf_dynptr_from_xdp(ctx, 0, &pkt) < 0 || bpf_dynptr_copy(&rec, sizeof(*ev), &pkt, 0, cap) < 0) {
		bpf_ringbuf_discard_dynptr(&rec, 0);
		cnt->reserve_failed++;
		return XDP_PASS;
	}
	fill_event(ev, ctx, cnt, frame_len, cap);
	bpf_ringbuf_submit_dynptr(&rec, wakeup);
	cnt->written++;
	return XDP_PASS;
}

// scratch holds a record per CPU for write_output: the event, then
// snaplen bytes of frame. A per-CPU array takes no value as large as a
// whole jumbo frame, so it is an array with an entry per CPU; its value
// size and entries are set from Go.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct event) + 256); // replaced from Go
	__uint(max_entries, 1);                         // replaced from Go
} scratch SEC(".maps");

// write_output writes a record of exactly the captured bytes: it copies
// the frame into this CPU's scratch record, then the record into the ring
// with bpf_ringbuf_output(), which takes a size the verifier does not
// know. XDP runs with bottom halves off, so nothing else on this CPU uses
// the scratch record meanwhile.
static __always_inline int write_output(struct xdp_md *ctx, void *ring, struct iface_counters *cnt, __u64 cap, __u64 frame_len)
{
	// A frame that fills the snap length, as most selected frames do,
	// fits a record of a constant size: reserved, it is copied once,
	// straight into the ring (BenchmarkProgram's selected-drained: ~20%
	// fewer ns than the copy through scratch).
	if (cap == snaplen)
		return write_snaplen(ctx, ring, cnt, NULL, cap, frame_len, 1);
	__u64 wakeup = 0;
	if (!room(ring, cnt, cap, &wakeup))
		return XDP_PASS;
	__u32 cpu = bpf_get_smp_processor_id();
	struct event *ev = bpf_map_lookup_elem(&scratch, &cpu);
	if (!ev) {
		cnt->reserve_failed++;
		return XDP_PASS;
	}
	// As in submit, a copy that fails counts as a reserve failure.
	if (bpf_xdp_load_bytes(ctx, 0, (void *)(ev + 1), cap) < 0) {
		cnt->reserve_failed++;
		return XDP_PASS;
	}
	fill_event(ev, ctx, cnt, frame_len, cap);
	if (bpf_ringbuf_output(ring, ev, sizeof(*ev) + cap, wakeup) < 0) {
		cnt->reserve_failed++;
		return XDP_PASS;
	}
	cnt->written++;
	return XDP_PASS;
}

// ringcap_filter is the user's filter expression (--filter). The loader
// (bpf/filter.go) replaces this body with the expression, compiled by
// libpcap and translated to eBPF; without one it stays as it is and every
// frame matches. It is a global function: clang neither inlines it nor
// folds its result into the caller, and the verifier checks it once, not
// for each call.
__noinline int ringcap_filter(struct xdp_md *ctx, __u32 frame_len)
{
	// Every frame matches. Both arguments must be used, or clang passes
	// nothing in their registers (the filter needs them); and ctx is
	// read, not compared: without CAP_PERFMON the verifier refuses
	// pointer comparisons.
	return ctx->ingress_ifindex != 0 || frame_len != 0;
}

// capture_frame is the whole program. Its flags are compile-time
// constants: linear says the frame is known to be a single buffer;
// ringcap's programs pass reserve_first 0, check_room 1 and per_cpu_ring
// 0, and the benchmark variants at the end change one choice each, to
// measure what it is worth.
static __always_inline int capture_frame(struct xdp_md *ctx, const int linear, const int reserve_first, const int check_room,
					 const int per_cpu_ring, const int record_mode)
{
	void *ring = &events;
	__u32 key = slot;
	struct iface_counters *cnt = bpf_map_lookup_elem(&counters, &key);
	if (!cnt)
		return XDP_PASS;
	cnt->seen++;

	struct event *ev = NULL;
	if (reserve_first) {
		// The pattern ringcap avoids: the ring's lock is taken for
		// every frame, wanted or not.
		ev = bpf_ringbuf_reserve(ring, sizeof(*ev) + snaplen, 0);
		if (!ev)
			return XDP_PASS;
	}

	if (linear && !capture_all) {
		// A single-buffer frame ends at data_end, so the unwanted ones
		// are told apart without the helper call below. The verifier
		// allows a register offset on a packet pointer only with
		// CAP_PERFMON (a Spectre v1 guard): capture loads this build
		// only then.
		void *data = (void *)(long)ctx->data;
		void *data_end = (void *)(long)ctx->data_end;
		if (mtu > 0xffff || data + ETH_HDR_LEN + mtu >= data_end)
			goto pass;
	}
	__u64 frame_len = bpf_xdp_get_buff_len(ctx);
	if (!selected(ctx, frame_len))
		goto pass;
	// The verifier needs the copy length proven within [1, snaplen]:
	// clamp in unsigned arithmetic. XDP frames are never shorter than an
	// Ethernet header, so cap is never 0.
	__u64 cap = frame_len < snaplen ? frame_len : snaplen;
	if (cap < 1 || cap > snaplen)
		goto pass;
	// The expression runs only for frames the length test kept, and
	// before anything touches the ring.
	if (!ringcap_filter(ctx, frame_len))
		goto pass;
	cnt->selected++;

#ifdef RINGCAP_VARIANTS
	if (per_cpu_ring) {
		__u32 cpu = bpf_get_smp_processor_id();
		ring = bpf_map_lookup_elem(&cpu_rings, &cpu);
		if (!ring) {
			cnt->reserve_failed++;
			return XDP_PASS;
		}
	}
#endif
	if (ev || record_mode == RECORD_SNAPLEN)
		return write_snaplen(ctx, ring, cnt, ev, cap, frame_len, check_room);
	if (record_mode == RECORD_CLASSES)
		return write_class(ctx, ring, cnt, cap, frame_len);
	if (record_mode == RECORD_OUTPUT)
		return write_output(ctx, ring, cnt, cap, frame_len);
	return write_dynptr(ctx, ring, cnt, cap, frame_len);

pass:
	if (ev)
		bpf_ringbuf_discard(ev, 0);
	return XDP_PASS;
}

SEC("xdp.frags")
int ringcap_xdp(struct xdp_md *ctx)
{
	return capture_frame(ctx, 0, 0, 1, 0, RECORD_MODE);
}

SEC("xdp")
int ringcap_linear(struct xdp_md *ctx)
{
	return capture_frame(ctx, 1, 0, 1, 0, RECORD_MODE);
}

#ifdef RINGCAP_VARIANTS
// For the benchmarks only (bpf/variants), never loaded by ringcap.

// The other ways to size a record.
SEC("xdp.frags")
int record_snaplen(struct xdp_md *ctx)
{
	return capture_frame(ctx, 0, 0, 1, 0, RECORD_SNAPLEN);
}

SEC("xdp.frags")
int record_classes(struct xdp_md *ctx)
{
	return capture_frame(ctx, 0, 0, 1, 0, RECORD_CLASSES);
}

SEC("xdp.frags")
int record_dynptr(struct xdp_md *ctx)
{
	return capture_frame(ctx, 0, 0, 1, 0, RECORD_DYNPTR);
}

SEC("xdp.frags")
int record_output(struct xdp_md *ctx)
{
	return capture_frame(ctx, 0, 0, 1, 0, RECORD_OUTPUT);
}

SEC("xdp.frags")
int reserve_first(struct xdp_md *ctx)
{
	return capture_frame(ctx, 0, 1, 1, 0, RECORD_SNAPLEN);
}

SEC("xdp.frags")
int no_room_check(struct xdp_md *ctx)
{
	return capture_frame(ctx, 0, 0, 0, 0, RECORD_SNAPLEN);
}

// One ring per CPU, to measure what the shared ring's lock costs.
SEC("xdp.frags")
int per_cpu_ring(struct xdp_md *ctx)
{
	return capture_frame(ctx, 0, 0, 1, 1, RECORD_MODE);
}
#endif
