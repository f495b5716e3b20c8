package writer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Writing through O_DIRECT.
//
// Buffered, the kernel copies every byte written into the page cache, and
// that copy was over half of ringcap's CPU time in a sustained capture
// (a profile's copy_folio_from_iter_atomic). With O_DIRECT the disk reads
// our buffers itself. The price is alignment: a direct write must start
// and end on an I/O boundary (statx's dio_offset_align, 512 bytes on
// ext4; ringcap uses the file system's block, directAlign) from memory
// aligned as well.
//
// directFile is the Writer's blockSink for such a file. The Writer fills
// a buffer from a pool of aligned ones and hands it to a goroutine that
// writes it, taking the next buffer meanwhile, so that the ring reader
// waits for the disk only once the whole pool is queued.
//
// The file must still end on a whole block at any moment (a killed
// capture leaves a file that reads), so a full buffer is made to end on an
// I/O boundary with a padding block (a local-use block type, which
// Wireshark, libpcap and pcapgo skip) rather than by cutting a block in
// two. What must reach the file before the buffer is full (capture.Run
// flushes every second, and when the ring is empty) is written through
// the page cache instead, from the buffer's last direct write on: it
// takes no padding, so a slow capture's file does not grow by a boundary
// per flush. The next direct write rewrites those bytes with the same
// ones; Linux writes back and drops the cached pages of a range before
// writing it directly, so the two paths never disagree.

const (
	// DirectBufferSize is the size of each buffer a direct Writer fills,
	// and directBuffers how many a capture has: one filling, the others
	// queued to the disk.
	DirectBufferSize = 4 << 20
	directBuffers    = 4
	// directSlack is kept free at the end of a direct buffer: room for the
	// block that takes it past its size (an Enhanced Packet Block of the
	// largest snap length, or a header block) and for the padding block.
	directSlack = 128 << 10
	// ngBlockTypePadding is the padding block's type. Types with the top
	// bit set are for local use (the pcapng specification's block type
	// codes): readers skip them.
	ngBlockTypePadding = 0x80000000 | 0x5243 // "RC"
)

// directFile is an output file written through O_DIRECT by a goroutine of
// its own.
type directFile struct {
	direct  fileAt // the file opened with O_DIRECT
	cached  cachedFile
	closer  func() error // closes direct
	align   int
	buffers *alignedBuffers

	// The Writer's side.
	off         int64  // where the Writer's buffer starts in the file
	base        uint64 // packets in the file before that buffer
	tailed      int    // bytes of that buffer already handed over
	tailPackets uint64 // packets in the file once those bytes are in it
	jobs        chan directJob
	done        chan struct{}

	// The goroutine's side.
	onDisk       int64 // bytes of the file that hold whole blocks
	savedPackets atomic.Uint64
	mu           sync.Mutex
	err          error
}

type fileAt interface {
	WriteAt(p []byte, off int64) (int, error)
}

type cachedFile interface {
	fileAt
	Truncate(size int64) error
}

// directJob is bytes for the file: whole blocks.
type directJob struct {
	data    []byte
	at      int64
	cached  bool          // write through the page cache: data need not be aligned
	base    uint64        // packets in the file before data
	packets uint64        // packets in the file once data is in it
	buffer  []byte        // data's buffer, for the pool once written; nil: not yet
	done    chan struct{} // not a write: closed once the jobs before are done
}

// openDirect opens f's file a second time with O_DIRECT, if its file
// system takes it and there is memory for the buffers. When not, it
// returns nil and why, for the user: the file is then written through the
// page cache, only slower.
func openDirect(f *os.File, buffers func() (*alignedBuffers, error)) (d *directFile, why string) {
	var st unix.Statx_t
	if err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &st); err != nil {
		return nil, "statx: " + err.Error()
	}
	// tmpfs accepts O_DIRECT but reports no alignment: it has no disk to
	// go to directly, so there is nothing to gain.
	if st.Mask&unix.STATX_DIOALIGN == 0 || st.Dio_offset_align == 0 || st.Dio_mem_align == 0 {
		return nil, fsName(f) + " does not take O_DIRECT"
	}
	align := directAlign(st.Dio_offset_align, st.Blksize)
	if align > os.Getpagesize() || int(st.Dio_mem_align) > os.Getpagesize() || align%4 != 0 {
		return nil, fmt.Sprintf("%s wants O_DIRECT aligned to %d bytes", fsName(f), align)
	}
	// Opened again through the descriptor, not by name: the name may
	// lead elsewhere by now (a link another user put in its place), the
	// descriptor only to the file ringcap created.
	direct, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_WRONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "/proc is not mounted, and O_DIRECT opens the file again through it"
	}
	if err != nil {
		return nil, fmt.Sprintf("%s refused O_DIRECT: %v", fsName(f), errors.Unwrap(err))
	}
	pool, err := buffers()
	if err != nil {
		direct.Close()
		return nil, err.Error()
	}
	return newDirectFile(direct, f, direct.Close, align, pool), ""
}

func newDirectFile(direct fileAt, cached cachedFile, closer func() error, align int, pool *alignedBuffers) *directFile {
	d := &directFile{
		direct:  direct,
		cached:  cached,
		closer:  closer,
		align:   align,
		buffers: pool,
		jobs:    make(chan directJob, 4*directBuffers),
		done:    make(chan struct{}),
	}
	go d.run()
	return d
}

// directAlign is the boundary direct writes start and end on: the file
// system's block where that is larger than the least it takes. ext4
// takes direct writes on 512-byte boundaries, but it serialises one that
// starts or ends inside a block of its own, and a disk with 4 KiB
// physical sectors reads one first that a write covers in part: on ext4
// over such a disk, `dd oflag=direct` of 4 MiB less 128 KiB plus 512
// bytes a write ran at 90-290 MB/s, on 4 KiB boundaries at 360-810 MB/s,
// and a capture's writes, 512-aligned, took 25-70 ms each for 4 MiB under
// load.
func directAlign(least uint32, block uint32) int {
	align := int(least)
	if b := int(block); b > align && b <= os.Getpagesize() && b&(b-1) == 0 && b%align == 0 {
		align = b
	}
	return align
}

// fsName names f's file system for a message, as far as ringcap knows it.
func fsName(f *os.File) string {
	var st unix.Statfs_t
	if unix.Fstatfs(int(f.Fd()), &st) == nil {
		switch st.Type {
		case unix.TMPFS_MAGIC:
			return "tmpfs"
		case unix.OVERLAYFS_SUPER_MAGIC:
			return "overlayfs"
		case unix.NFS_SUPER_MAGIC:
			return "NFS"
		case unix.FUSE_SUPER_MAGIC:
			return "a FUSE file system"
		}
	}
	return "its file system"
}

// run writes the jobs in order. After a failure it writes nothing more,
// but still hands the buffers back, so that the Writer never waits for
// one that will not come.
func (d *directFile) run() {
	defer close(d.done)
	for j := range d.jobs {
		if j.done != nil {
			close(j.done)
			continue
		}
		if d.failed() == nil {
			if err := d.write(j); err != nil {
				d.mu.Lock()
				d.err = err
				d.mu.Unlock()
			}
		}
		if j.buffer != nil {
			d.buffers.put(j.buffer)
		}
	}
}

func (d *directFile) write(j directJob) error {
	out := d.direct
	if j.cached {
		out = d.cached
	}
	n, err := out.WriteAt(j.data, j.at)
	if err == nil {
		d.onDisk = j.at + int64(len(j.data))
		d.savedPackets.Store(j.packets)
		return nil
	}
	if !j.cached && errors.Is(err, unix.EINVAL) {
		// statx promised direct I/O, and the file system refused it.
		err = fmt.Errorf("%w: %w", err, ErrDirectRefused)
	}
	// Cut the file back to its last whole block: what this write left
	// whole, or what was there before, whichever is longer (a direct
	// write may fail over bytes a cached one wrote already).
	whole, packets := wholeBlocks(j.data[:max(n, 0)])
	if end := j.at + int64(whole); end > d.onDisk {
		d.onDisk = end
		d.savedPackets.Store(j.base + packets)
	}
	if terr := d.cached.Truncate(d.onDisk); terr != nil {
		return fmt.Errorf("%w; cutting the partial block off failed too: %v", err, terr)
	}
	return err
}

func (d *directFile) failed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// start, spill, flush, wait, close and saved make directFile a blockSink.

func (d *directFile) start() ([]byte, int, bool) {
	buf := d.buffers.get()
	return buf, cap(buf) - directSlack, true
}

// spill pads a full buffer to an I/O boundary and queues it.
func (d *directFile) spill(buf []byte, packets uint64) ([]byte, int, error) {
	if err := d.failed(); err != nil {
		return buf, 0, err
	}
	n := len(buf)
	buf = appendPadding(buf, d.align)
	return d.writeFull(buf, packets), len(buf) - n, nil
}

// flush queues what buf holds beyond the last write through the page
// cache; buf goes on filling.
func (d *directFile) flush(buf []byte, packets uint64) ([]byte, error) {
	if err := d.failed(); err != nil {
		return buf, err
	}
	d.writeTail(buf, packets)
	return buf, nil
}

func (d *directFile) saved() uint64 { return d.savedPackets.Load() }

// writeFull queues buf, a full buffer that ends on an I/O boundary, and
// returns an empty one for what follows it in the file. It waits only
// when every buffer is queued.
func (d *directFile) writeFull(buf []byte, packets uint64) []byte {
	d.jobs <- directJob{data: buf, at: d.off, base: d.base, packets: packets, buffer: buf}
	d.off += int64(len(buf))
	d.base = packets
	d.tailed, d.tailPackets = 0, packets
	return d.buffers.get()
}

// writeTail queues the bytes of buf, the buffer being filled, that no
// write has taken yet, to go through the page cache.
func (d *directFile) writeTail(buf []byte, packets uint64) {
	if len(buf) == d.tailed {
		return
	}
	base := d.base
	if d.tailed > 0 {
		base = d.tailPackets
	}
	d.jobs <- directJob{data: buf[d.tailed:], at: d.off + int64(d.tailed), cached: true, base: base, packets: packets}
	d.tailed, d.tailPackets = len(buf), packets
}

// wait returns once every job queued so far is done, with the first
// failure.
func (d *directFile) wait() error {
	done := make(chan struct{})
	d.jobs <- directJob{done: done}
	<-done
	return d.failed()
}

// close writes the rest of buf, waits for every write, and closes the
// O_DIRECT descriptor; buf goes back to the pool.
func (d *directFile) close(buf []byte, packets uint64) error {
	d.writeTail(buf, packets)
	close(d.jobs)
	<-d.done
	d.buffers.put(buf)
	return errors.Join(d.failed(), d.closer())
}

// appendPadding appends a padding block that takes b to a multiple of
// align, if it is not one.
func appendPadding(b []byte, align int) []byte {
	n := len(b) % align
	if n == 0 {
		return b
	}
	pad := align - n
	if pad < 12 { // the smallest block: type and length twice
		pad += align
	}
	b = binary.LittleEndian.AppendUint32(b, ngBlockTypePadding)
	b = binary.LittleEndian.AppendUint32(b, uint32(pad))
	b = append(b, make([]byte, pad-12)...)
	return binary.LittleEndian.AppendUint32(b, uint32(pad))
}

// alignedBuffers is a pool of page-aligned buffers, mapped outside Go's
// heap: Go promises no alignment for a slice.
type alignedBuffers struct {
	free chan []byte
	all  [][]byte
}

func newAlignedBuffers(n, size int) (*alignedBuffers, error) {
	p := &alignedBuffers{free: make(chan []byte, n)}
	for range n {
		b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
		if err != nil {
			p.release()
			return nil, fmt.Errorf("no memory for direct I/O's %d MiB of buffers: %w", n*size>>20, err)
		}
		p.all = append(p.all, b)
		p.free <- b
	}
	return p, nil
}

func (p *alignedBuffers) get() []byte { return (<-p.free)[:0] }

func (p *alignedBuffers) put(b []byte) { p.free <- b[:0] }

// release unmaps the buffers; none may be in use.
func (p *alignedBuffers) release() {
	for _, b := range p.all {
		unix.Munmap(b)
	}
	p.all = nil
}
