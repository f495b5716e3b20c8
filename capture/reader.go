package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf"
)

// reader merges the rings the programs write into, one per CPU or group
// of CPUs, into one stream of records in the order of their timestamps.
//
// Each ring holds its CPUs' records in the order they were written. The
// reader keeps each ring's next record, its head, in a tournament by
// timestamp and hands out the oldest. A ring without a record is the
// difficulty: a record older than the heads may still come there. A
// program takes its record's timestamp within microseconds of the record
// showing in the ring (reserved, or written at once by
// bpf_ringbuf_output). So once a quiet ring has been seen empty at time
// T, no record older than T - quietWait comes there any more: a head
// waits for quiet rings until it is that old, quietWait at most.
//
// One epoll serves every ring, edge-triggered: a ring whose head the
// reader holds back stays readable, and would wake it again and again.
type reader struct {
	rings []*ring
	heads [][]byte // by ring: its head, nil if it has none
	// tree is a tournament between the heads: node n's children are
	// 2n and 2n+1, leaf len(tree)/2+i is ring i's head, every other
	// node the oldest head below it; tree[1], the oldest of all.
	tree  []match
	quiet []int // the rings without a head
	last  int   // the ring whose head Next handed out last, or -1
	// bound is the time, on the programs' clock, up to which no record
	// will come to a quiet ring any more.
	bound uint64
	// early says the oldest head is from the future, past the last look
	// at the quiet rings by more than maxAhead: a damaged timestamp, or
	// a clock gone wrong, whose wait could outlast the capture. It goes
	// out at once.
	early bool
	// settled says no record is on its way to a ring: a quiet ring has
	// none to come, and heads need not wait for it.
	settled bool
	// flushing says Flush woke the reader: what is in the rings is all
	// there is, until Next returns errFlushed.
	flushing bool
	mono     monoClock

	epfd     int
	wake     int // an eventfd: Flush
	events   []unix.EpollEvent
	deadline time.Time
	pending  error // to return once the rings are empty

	closeMu sync.Mutex // Flush against Close
}

// match is a node of the tournament: the oldest head below it.
type match struct {
	ts   uint64 // the head's timestamp, or noHead
	ring int
}

// noHead is the timestamp of a leaf without a head: later than any
// record's.
const noHead = math.MaxUint64

// quietWait bounds how long a record waits for quiet rings; see reader.
const quietWait = time.Millisecond

// maxAhead is how far ahead of the clock a record's timestamp may be and
// still wait for quiet rings; see reader.early.
const maxAhead = time.Minute

// errFlushed is returned by Next once the records in the rings when Flush
// was called have been read.
var errFlushed = errors.New("ring flushed")

// newReader maps the rings for reading.
func newReader(maps []*ebpf.Map) (r *reader, err error) {
	if len(maps) == 0 {
		return nil, errors.New("no ring to read")
	}
	leaves := 1 << bits.Len(uint(len(maps)-1))
	r = &reader{last: -1, epfd: -1, wake: -1, heads: make([][]byte, len(maps)),
		tree: make([]match, 2*leaves)}
	for i := range leaves {
		r.tree[leaves+i] = match{noHead, i}
	}
	for n := leaves - 1; n > 0; n-- {
		r.tree[n] = r.tree[2*n]
	}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if r.mono, err = newMonoClock(); err != nil {
		return nil, err
	}
	for i, m := range maps {
		rg, err := newRing(m)
		if err != nil {
			return nil, fmt.Errorf("ring %d: %w", i, err)
		}
		r.rings = append(r.rings, rg)
		r.quiet = append(r.quiet, i)
	}
	if r.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("create epoll: %w", err)
	}
	if r.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	add := func(fd int, flags uint32) error {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | flags, Fd: int32(fd)}
		if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return fmt.Errorf("add fd %d to epoll: %w", fd, err)
		}
		return nil
	}
	for _, m := range maps {
		if err := add(m.FD(), unix.EPOLLET); err != nil {
			return nil, err
		}
	}
	if err := add(r.wake, 0); err != nil {
		return nil, err
	}
	r.events = make([]unix.EpollEvent, len(maps)+1)
	return r, nil
}

// Next returns the oldest record of the rings, which stays valid until
// the next call. When the rings are empty it waits for the programs to
// wake it, until the deadline (os.ErrDeadlineExceeded) or a Flush
// (errFlushed); either error comes once the records in the rings then
// have been read.
func (r *reader) Next() ([]byte, error) {
	if r.last >= 0 {
		if err := r.advance(); err != nil {
			return nil, err
		}
	}
	for {
		if r.held() > 0 && (len(r.quiet) == 0 || r.settled || r.flushing || r.early || r.tree[1].ts <= r.bound) {
			r.early = false
			r.last = r.tree[1].ring
			return r.heads[r.last], nil
		}
		found, err := r.pollQuiet()
		if err != nil {
			return nil, err
		}
		if found || r.held() > 0 && r.tree[1].ts <= r.bound {
			continue
		}
		if r.held() > 0 && r.tree[1].ts > r.bound+uint64(quietWait+maxAhead) {
			r.early = true
			continue
		}
		if r.held() == 0 && r.pending != nil {
			err := r.pending
			r.pending, r.flushing = nil, false
			return nil, err
		}
		until := r.deadline
		if r.held() > 0 {
			// The head goes out once quiet rings can no longer
			// bring an older record.
			until = r.mono.timeOf(r.tree[1].ts).Add(quietWait)
		}
		if err := r.wait(until); err != nil {
			return nil, err
		}
	}
}

// held is how many rings have a head: every ring but the quiet ones.
func (r *reader) held() int { return len(r.rings) - len(r.quiet) }

// advance reads the next record of the ring whose head was handed out.
func (r *reader) advance() error {
	i := r.last
	r.last = -1
	rec, err := r.rings[i].Next()
	if err != nil {
		return err
	}
	if rec == nil {
		r.heads[i] = nil
		r.replay(i, noHead)
		r.quiet = append(r.quiet, i)
		return nil
	}
	r.heads[i] = rec
	r.replay(i, timestamp(rec))
	return nil
}

// pollQuiet looks for records in the quiet rings, and moves the bound up
// to the time it looked, less quietWait.
func (r *reader) pollQuiet() (found bool, err error) {
	// The clock first: a record that comes after the look is younger.
	now := r.mono.now()
	still := r.quiet[:0]
	for _, i := range r.quiet {
		rec, err := r.rings[i].Next()
		if err != nil {
			return false, err
		}
		if rec == nil {
			still = append(still, i)
			continue
		}
		r.heads[i] = rec
		r.replay(i, timestamp(rec))
		found = true
	}
	r.quiet = still
	r.bound = max(now, uint64(quietWait)) - uint64(quietWait)
	return found, nil
}

// timestamp is a record's ts_ns, below noHead; a record too short to
// hold one is handed out first, for decodeEvent to refuse.
func timestamp(rec []byte) uint64 {
	if len(rec) < bpf.EventTsOffset+8 {
		return 0
	}
	return min(binary.NativeEndian.Uint64(rec[bpf.EventTsOffset:]), noHead-1)
}

// replay gives ring i's leaf the timestamp ts and plays the matches on
// its way to the root again; the other side of each is unchanged.
//
// A tournament rather than a heap (container/heap's, or one written out):
// the merge runs once per record, and a heap's sift makes two comparisons
// a level whose branches go either way at random when the rings' records
// interleave, where a replay makes one, which the compiler turns into
// conditional moves. Merging 64 rings, BenchmarkReaderMerge measured a
// record at 2.2 to 2.5 times one ring's with a heap, 1.7 to 2.0 with the
// tournament. Most of the rest is the memory's: read in turn, the rings
// find fewer records in the caches than one ring read in order, which the
// processor fetches ahead.
func (r *reader) replay(i int, ts uint64) {
	tree := r.tree
	n, w := len(tree)/2+i, i
	tree[n].ts = ts
	for n > 1 {
		o := tree[n^1]
		if o.ts < ts {
			w = o.ring
		}
		ts = min(ts, o.ts)
		n >>= 1
		tree[n] = match{ts, w}
	}
}

// wait waits for the programs to wake the reader, for a Flush, or until
// until (none if zero). It leaves os.ErrDeadlineExceeded in pending if
// the deadline passed, errFlushed if Flush woke it.
func (r *reader) wait(until time.Time) error {
	msec := -1
	if !until.IsZero() {
		msec = max(int((time.Until(until)+time.Millisecond-1)/time.Millisecond), 0)
	}
	for {
		n, err := unix.EpollWait(r.epfd, r.events, msec)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for the rings: %w", err)
		}
		if !r.deadline.IsZero() && !time.Now().Before(r.deadline) {
			r.pending = os.ErrDeadlineExceeded
		}
		for _, ev := range r.events[:n] {
			if int(ev.Fd) == r.wake {
				var buf [8]byte
				unix.Read(r.wake, buf[:])
				r.pending, r.flushing = errFlushed, true
			}
		}
		return nil
	}
}

// SetDeadline bounds how long Next waits for a record; zero: no bound.
func (r *reader) SetDeadline(t time.Time) { r.deadline = t }

// SetSettled says whether records may still be on their way to the
// rings. A replay's are not: its test runs are over when it reads, and its
// records go out without waiting for quiet rings.
func (r *reader) SetSettled(settled bool) { r.settled = settled }

// Flush makes Next return errFlushed once it has read the records in the
// rings. Unlike the other methods it may be called while Next runs, and
// after Close, when it does nothing.
func (r *reader) Flush() error {
	r.closeMu.Lock()
	defer r.closeMu.Unlock()
	if r.wake < 0 {
		return nil
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	if _, err := unix.Write(r.wake, one[:]); err != nil && !errors.Is(err, unix.EAGAIN) {
		return fmt.Errorf("wake the rings' reader: %w", err)
	}
	return nil
}

// More says whether Next has records in hand beyond the one it returned
// last, without looking at the producers' positions: the end of a batch.
func (r *reader) More() bool {
	return r.held() > 1 || r.last >= 0 && r.rings[r.last].Buffered() > 0
}

// Release gives back the records read so far, as Next does before it
// waits, and the heads not handed out go back into their rings: for a
// reader that stops reading.
func (r *reader) Release() {
	for i, head := range r.heads {
		if head == nil {
			continue
		}
		if i != r.last {
			r.rings[i].Unread()
		}
		r.heads[i] = nil
		r.replay(i, noHead)
		r.quiet = append(r.quiet, i)
	}
	r.last = -1
	for _, rg := range r.rings {
		rg.Release()
	}
}

// Rings is the number of rings.
func (r *reader) Rings() int { return len(r.rings) }

// RingSize is each ring's data size in bytes.
func (r *reader) RingSize() int { return r.rings[0].Size() }

// Used is how many bytes of ring i hold records the reader has not given
// back. It may be called while Next runs.
func (r *reader) Used(i int) int { return r.rings[i].Used() }

// UsedAll is Used summed over the rings.
func (r *reader) UsedAll() int {
	n := 0
	for _, rg := range r.rings {
		n += rg.Used()
	}
	return n
}

// Close unmaps the rings; Next must not be running, Used and Flush may.
func (r *reader) Close() error {
	r.closeMu.Lock()
	defer r.closeMu.Unlock()
	var errs []error
	for _, rg := range r.rings {
		errs = append(errs, rg.Close())
	}
	for _, fd := range []*int{&r.epfd, &r.wake} {
		if *fd >= 0 {
			errs = append(errs, unix.Close(*fd))
			*fd = -1
		}
	}
	return errors.Join(errs...)
}

// monoClock reads the programs' clock, CLOCK_MONOTONIC, through Go's
// time.Now, which the vDSO serves without a system call: the offset is
// taken once, and both clocks run at the same rate.
type monoClock struct {
	base uint64 // CLOCK_MONOTONIC at at
	at   time.Time
}

func newMonoClock() (monoClock, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return monoClock{}, fmt.Errorf("read CLOCK_MONOTONIC: %w", err)
	}
	return monoClock{base: uint64(ts.Nano()), at: time.Now()}, nil
}

func (m monoClock) now() uint64 { return m.base + uint64(time.Since(m.at)) }

// timeOf is the Go time of a CLOCK_MONOTONIC reading, for timers.
func (m monoClock) timeOf(ns uint64) time.Time { return m.at.Add(time.Duration(int64(ns - m.base))) }
