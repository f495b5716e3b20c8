package capture

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ring reads one of the BPF ring buffers the programs write into; a
// reader merges them.
//
// Written by hand, not cilium/ebpf's ringbuf.Reader, because of what that
// costs per record on the busy hosts ringcap is for: the Reader loads the
// producer's position and stores the consumer's after every record, and
// both sit on pages the programs use on every other CPU, so each record
// paid two cache-line transfers between CPUs (in a sustained capture's
// profile, 23% of ringcap's CPU time in those three instructions); and it
// copies every record out of the ring, where ringcap only needs to read
// it once, into the file's buffer (another 9%). ring reads the producer's
// position only when it has caught up with the one it read last, hands
// out records where they lie, and gives the space back in batches.
//
// The layout is the kernel's (kernel/bpf/ringbuf.c): a page with the
// consumer position, which the reader writes; a page with the producer
// position; the data pages, mapped twice in a row so that a record that
// wraps around is whole in memory. Each record starts with an 8-byte
// header, its length with two flag bits, and is padded to 8 bytes.
type ring struct {
	fd      int // the map's
	consMap []byte
	prodMap []byte
	data    []byte // the data pages, twice
	mask    uintptr
	consPos *uintptr // in consMap
	prodPos *uintptr // in prodMap

	cons      uintptr // the next record to read
	prod      uintptr // the producer position last read
	published uintptr // the consumer position last given to the kernel
	batch     uintptr // how much is read before it is given back
	taken     uintptr // where the record Next returned last starts

	closeMu sync.Mutex // Used against Close
}

const (
	ringHeaderSize = 8
	ringBusyBit    = 1 << 31 // reserved, not yet submitted
	ringDiscardBit = 1 << 30
)

func newRing(m *ebpf.Map) (r *ring, err error) {
	size := int(m.MaxEntries())
	page := os.Getpagesize()
	if size <= 0 || size&(size-1) != 0 || size%page != 0 {
		return nil, fmt.Errorf("ring of %d bytes: not a power of two pages", size)
	}
	r = &ring{fd: m.FD(), mask: uintptr(size - 1)}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if r.consMap, err = unix.Mmap(r.fd, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("map the ring's consumer page: %w", err)
	}
	if r.prodMap, err = unix.Mmap(r.fd, int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("map the ring's %d bytes: %w", size, err)
	}
	r.consPos = (*uintptr)(unsafe.Pointer(&r.consMap[0]))
	r.prodPos = (*uintptr)(unsafe.Pointer(&r.prodMap[0]))
	r.data = r.prodMap[page:]
	r.cons = atomic.LoadUintptr(r.consPos)
	r.prod, r.published = r.cons, r.cons
	// Giving space back late makes the ring look fuller to the programs'
	// free-space test: by a sixteenth of it at most, and 1 MiB, a few
	// thousand records, is enough to make the store a rare event.
	r.batch = uintptr(min(size/16, 1<<20))
	return r, nil
}

// Next returns the next record, which stays valid until the next call,
// or nil if the ring is empty.
func (r *ring) Next() ([]byte, error) {
	for {
		if r.cons == r.prod {
			if r.prod = atomic.LoadUintptr(r.prodPos); r.cons == r.prod {
				// Give everything back, then look again: a program
				// submitting with the kernel's default wakeup only
				// wakes a reader whose position it finds equal to its
				// record's.
				r.publish()
				if r.prod = atomic.LoadUintptr(r.prodPos); r.cons == r.prod {
					return nil, nil
				}
			}
		}
		if r.cons-r.published >= r.batch {
			r.publish()
		}
		// The atomic load orders the record's bytes after its header,
		// which the kernel writes last, with an xchg.
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[r.cons&r.mask])))
		if hdr&ringBusyBit != 0 {
			// Reserved by a program still running: records after it
			// may be done, but must be read in order. It is a matter
			// of nanoseconds (programs do not sleep).
			runtime.Gosched()
			continue
		}
		n := uintptr(hdr &^ (ringBusyBit | ringDiscardBit))
		start := r.cons + ringHeaderSize
		if r.prod-r.cons < ringHeaderSize || (n+7)&^7 > r.prod-start {
			return nil, fmt.Errorf("ring record of %d bytes runs past the producer position", n)
		}
		r.taken, r.cons = r.cons, start+(n+7)&^7
		if hdr&ringDiscardBit != 0 {
			continue
		}
		off := start & r.mask
		return r.data[off : off+n : off+n], nil
	}
}

// Buffered is how many bytes of records Next will return before it next
// looks at the producer's position.
func (r *ring) Buffered() int { return int(r.prod - r.cons) }

// Release gives back the records read so far, as Next does before it
// waits: for a reader that stops reading.
func (r *ring) Release() { r.publish() }

// Unread puts the record Next returned last back, for the next call to
// return again; Release must not have given it back since.
func (r *ring) Unread() { r.cons = r.taken }

func (r *ring) publish() {
	if r.published != r.cons {
		atomic.StoreUintptr(r.consPos, r.cons)
		r.published = r.cons
	}
}

// Size is the ring's data size in bytes.
func (r *ring) Size() int { return int(r.mask + 1) }

// Used is how many bytes of the ring hold records the reader has not
// given back. It may be called while Next runs.
func (r *ring) Used() int {
	r.closeMu.Lock()
	defer r.closeMu.Unlock()
	if r.prodMap == nil {
		return 0
	}
	return int(atomic.LoadUintptr(r.prodPos) - atomic.LoadUintptr(r.consPos))
}

// Close unmaps the ring; Next must not be running, Used may.
func (r *ring) Close() error {
	r.closeMu.Lock()
	defer r.closeMu.Unlock()
	var errs []error
	for _, m := range [][]byte{r.consMap, r.prodMap} {
		if m != nil {
			errs = append(errs, unix.Munmap(m))
		}
	}
	r.consMap, r.prodMap, r.data = nil, nil, nil
	return errors.Join(errs...)
}
