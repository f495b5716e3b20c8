package writer

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/capture/packet"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// fakeDisk is a file that holds room bytes at most, written through a
// directFile's two paths. It checks what the kernel would: that direct
// writes are aligned, and never leave a hole; and what ringcap promises:
// that after every write that succeeds the file ends on a whole block, so
// that a capture killed at any moment leaves a file that reads.
type fakeDisk struct {
	t     *testing.T
	align int
	room  int
	data  []byte
}

// fakeDirect is the fakeDisk opened with O_DIRECT.
type fakeDirect struct{ *fakeDisk }

func (d fakeDirect) WriteAt(p []byte, off int64) (int, error) {
	if off%int64(d.align) != 0 || len(p)%d.align != 0 || len(p) > 0 && uintptr(unsafe.Pointer(&p[0]))%uintptr(d.align) != 0 {
		d.t.Errorf("direct write of %d bytes at %d from %p: not aligned to %d", len(p), off, p, d.align)
		return 0, syscall.EINVAL
	}
	return d.fakeDisk.WriteAt(p, off)
}

func (d *fakeDisk) WriteAt(p []byte, off int64) (int, error) {
	if int(off) > len(d.data) {
		d.t.Errorf("write at %d leaves a hole after the file's %d bytes", off, len(d.data))
	}
	n := min(len(p), max(d.room-int(off), 0))
	if end := int(off) + n; end > len(d.data) {
		d.data = append(d.data, make([]byte, end-len(d.data))...)
	}
	copy(d.data[off:], p[:n])
	if n < len(p) {
		return n, syscall.ENOSPC
	}
	if whole, _ := wholeBlocks(d.data); whole != len(d.data) {
		d.t.Errorf("after a write of %d bytes at %d the file ends %d bytes into a block", len(p), off, len(d.data)-whole)
	}
	return n, nil
}

func (d *fakeDisk) Truncate(size int64) error {
	d.data = d.data[:size]
	return nil
}

// writeDirectSeries writes the same series of packets and flushes into a
// direct Writer on disk, with buffers of 256 KiB, and returns the error
// that stopped it and the Writer's count of packets saved.
func writeDirectSeries(t *testing.T, disk *fakeDisk) (saved uint64, err error) {
	pool, err := newAlignedBuffers(3, 256<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.release()
	d := newDirectFile(fakeDirect{disk}, disk, func() error { return nil }, disk.align, pool)
	w, err := newWriter(d, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if err = w.wait(); err == nil {
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range 400 {
			n := 60 + rng.IntN(9000)
			err = w.WritePacket(packet.Packet{Interface: i % 2, Time: t0.Add(time.Duration(i)), Length: n, Data: pcapngtest.Pattern(n, 0)})
			if err == nil && i%37 == 0 {
				err = w.Flush()
			}
			if err != nil {
				break
			}
		}
	}
	err = errors.Join(err, w.finish())
	return w.Saved(), err
}

// Writing directly, a write that fails part way, as on a full disk, leaves
// whole blocks only, a prefix of what the whole file would hold, and the
// Writer knows how many packets they hold; direct writes are aligned and
// the file ends on a whole block after every write.
func TestDirectWriteErrorKeepsWholeBlocks(t *testing.T) {
	for _, align := range []int{512, 4096} {
		t.Run(fmt.Sprint(align), func(t *testing.T) {
			whole := &fakeDisk{t: t, align: align, room: 1 << 30}
			saved, err := writeDirectSeries(t, whole)
			if err != nil || saved != 400 {
				t.Fatalf("with room: saved %d of 400, %v", saved, err)
			}
			full := whole.data
			path := filepath.Join(t.TempDir(), "whole.pcapng")
			if err := os.WriteFile(path, full, 0o600); err != nil {
				t.Fatal(err)
			}
			if n, _ := pcapngtest.Count(t, path, false); n != 400 {
				t.Fatalf("capinfos reads %d packets in the whole file, want 400", n)
			}
			if got := len(pcapngtest.Read(t, path).Packets); got != 400 {
				t.Fatalf("pcapgo reads %d packets in the whole file, want 400", got)
			}
			for room := 0; room < len(full); room += 1 + len(full)/300 {
				disk := &fakeDisk{t: t, align: align, room: room}
				saved, err := writeDirectSeries(t, disk)
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("room %d of %d: error %v, want ENOSPC", room, len(full), err)
				}
				end, packets := wholeBlocks(disk.data)
				if end != len(disk.data) {
					t.Fatalf("room %d: the file ends %d bytes into a block", room, len(disk.data)-end)
				}
				if !bytes.Equal(disk.data, full[:len(disk.data)]) {
					t.Fatalf("room %d: the file is not a prefix of the whole one", room)
				}
				if saved != packets {
					t.Fatalf("room %d: Saved() = %d, the file holds %d packets", room, saved, packets)
				}
			}
		})
	}
}

// The same packets written directly and through the page cache read the
// same, in Wireshark, libpcap and pcapgo; frames flushed are in the file
// before the buffer is full.
func TestDirectFiles(t *testing.T) {
	dir := pcapngtest.Mount(t, "ext4", 256<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	type write struct {
		p     packet.Packet
		flush bool
	}
	var writes []write
	for i := range 3000 {
		n := 60 + rng.IntN(9000)
		writes = append(writes, write{packet.Packet{Interface: i % 2, Time: t0.Add(time.Duration(i) * time.Microsecond), Length: n + 10, Data: pcapngtest.Pattern(n, 0)}, i%500 == 499})
	}
	opts := testOptions
	opts.Interfaces = []Interface{testInterfaces[0], testInterfaces[1]}
	for i := range opts.Interfaces {
		opts.Interfaces[i].SnapLen = 9100
	}
	paths := map[bool]string{}
	for _, buffered := range []bool{false, true} {
		path := filepath.Join(dir, fmt.Sprintf("buffered-%v.pcapng", buffered))
		paths[buffered] = path
		files, err := Create(Config{Path: path, Options: opts, Buffered: buffered})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{false: "direct I/O", true: "buffered, as asked"}[buffered]; files.IOMode() != want {
			t.Fatalf("IOMode() = %q, want %q", files.IOMode(), want)
		}
		for i, wr := range writes {
			if err := files.WritePacket(wr.p); err != nil {
				t.Fatal(err)
			}
			if !wr.flush {
				continue
			}
			if err := files.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := files.cur.w.wait(); err != nil {
				t.Fatal(err)
			}
			if n, _ := pcapngtest.Count(t, path, false); n != i+1 {
				t.Fatalf("buffered %v: %d packets in the file after a flush, want %d", buffered, n, i+1)
			}
		}
		if err := files.Close(); err != nil {
			t.Fatal(err)
		}
		if files.Saved() != uint64(len(writes)) {
			t.Fatalf("buffered %v: Saved() = %d, want %d", buffered, files.Saved(), len(writes))
		}
	}
	direct, buffered := pcapngtest.Read(t, paths[false]).Packets, pcapngtest.Read(t, paths[true]).Packets
	if len(direct) != len(writes) || len(buffered) != len(writes) {
		t.Fatalf("read %d packets written directly, %d buffered, want %d", len(direct), len(buffered), len(writes))
	}
	for i := range direct {
		if !direct[i].Time.Equal(buffered[i].Time) || direct[i].Length != buffered[i].Length || !bytes.Equal(direct[i].Data, buffered[i].Data) {
			t.Fatalf("packet %d differs", i)
		}
	}
	if n := len(pcapngtest.Tcpdump(t, paths[false], "")); n != len(writes) {
		t.Errorf("tcpdump -r reads %d packets written directly, want %d", n, len(writes))
	}
	info := pcapngtest.Run(t, "capinfos", "-c", paths[false])
	if !strings.Contains(info, fmt.Sprintf("Number of packets:   %d", len(writes))) {
		t.Errorf("capinfos:\n%s", info)
	}
}

// Where the file system does not take O_DIRECT, files are written through
// the page cache, and IOMode says why.
func TestIOMode(t *testing.T) {
	for _, tc := range []struct {
		fs, want string
	}{
		{"ext4", "direct I/O"},
		{"tmpfs", "buffered: tmpfs does not take O_DIRECT"},
	} {
		dir := pcapngtest.Mount(t, tc.fs, 64<<20)
		files, err := Create(Config{Path: filepath.Join(dir, "x.pcapng"), Options: testOptions})
		if err != nil {
			t.Fatal(err)
		}
		if files.IOMode() != tc.want {
			t.Errorf("%s: IOMode() = %q, want %q", tc.fs, files.IOMode(), tc.want)
		}
		if d, ok := files.cur.w.sink.(*directFile); ok {
			// Direct writes go on the file system's block boundaries
			// (mkfs makes 1 KiB blocks on a file system this small),
			// not the 512 bytes the loop device takes.
			var st unix.Stat_t
			if err := unix.Stat(files.cur.path, &st); err != nil {
				t.Fatal(err)
			}
			if d.align != int(st.Blksize) || d.align <= 512 {
				t.Errorf("%s: direct writes aligned to %d, the file system's block is %d", tc.fs, d.align, st.Blksize)
			}
		}
		if err := files.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Without memory for the buffers, the file is written through the
	// page cache too.
	f, err := os.Create(filepath.Join(pcapngtest.Mount(t, "ext4", 64<<20), "y.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	noMemory := func() (*alignedBuffers, error) {
		return nil, fmt.Errorf("no memory for direct I/O's 16 MiB of buffers: %w", syscall.ENOMEM)
	}
	if d, why := openDirect(f, noMemory); d != nil || why != "no memory for direct I/O's 16 MiB of buffers: cannot allocate memory" {
		t.Errorf("openDirect without memory: %v, %q", d, why)
	}
}

func TestDirectAlign(t *testing.T) {
	for _, tc := range []struct {
		least, block uint32
		want         int
	}{
		{512, 4096, 4096},
		{512, 1024, 1024},
		{4096, 1024, 4096},
		{512, 0, 512},
		{512, 1 << 20, 512}, // larger than a page: a buffer could not end on it
		{512, 3000, 512},    // not a power of two
		{768, 1024, 768},    // not a multiple of the least
	} {
		if got := directAlign(tc.least, tc.block); got != tc.want {
			t.Errorf("directAlign(%d, %d) = %d, want %d", tc.least, tc.block, got, tc.want)
		}
	}
}

// gatedDirect is a fakeDisk whose direct writes wait until gate is
// closed: a disk that has not answered yet.
type gatedDirect struct {
	fakeDirect
	gate <-chan struct{}
}

func (d gatedDirect) WriteAt(p []byte, off int64) (int, error) {
	<-d.gate
	return d.fakeDirect.WriteAt(p, off)
}

// The Writer hands full buffers to the disk and goes on filling the next:
// until every buffer of the pool is queued, it never waits for a write.
func TestDirectWritesInBackground(t *testing.T) {
	const buffers = 3
	pool, err := newAlignedBuffers(buffers, 256<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.release()
	disk := &fakeDisk{t: t, align: 512, room: 1 << 30}
	gate := make(chan struct{})
	d := newDirectFile(gatedDirect{fakeDirect{disk}, gate}, disk, func() error { return nil }, 512, pool)
	w, err := newWriter(d, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.wait(); err != nil {
		t.Fatal(err)
	}
	header := len(disk.data) // written through the page cache
	// Fill buffers-1 of them while the disk takes nothing: each is handed
	// over, and the Writer goes on in the last one.
	filled := make(chan uint64)
	go func() {
		var n uint64
		for handedOver := 0; handedOver < buffers-1; n++ {
			off := d.off
			if err := w.WritePacket(packet.Packet{Time: t0, Length: 1000, Data: pcapngtest.Pattern(1000, 0)}); err != nil {
				t.Error(err)
				break
			}
			if d.off != off {
				handedOver++
			}
		}
		filled <- n
	}()
	var n uint64
	select {
	case n = <-filled:
	case <-time.After(10 * time.Second):
		close(gate)
		t.Fatal("the Writer waited for the disk with buffers to spare")
	}
	if len(disk.data) != header {
		t.Fatalf("%d bytes reached the disk before it answered, want the %d of the header", len(disk.data), header)
	}
	close(gate)
	if err := w.finish(); err != nil {
		t.Fatal(err)
	}
	if whole, packets := wholeBlocks(disk.data); whole != len(disk.data) || packets != n || w.Saved() != n {
		t.Fatalf("the file holds %d of %d bytes in whole blocks and %d packets, Saved() %d; want %d packets", whole, len(disk.data), packets, w.Saved(), n)
	}
}

// refusingDirect is a disk that refuses every direct write, as a file
// system that reports an alignment for O_DIRECT and then turns it down
// would.
type refusingDirect struct{}

func (refusingDirect) WriteAt([]byte, int64) (int, error) { return 0, syscall.EINVAL }

// A refused direct write stops the file with an error that names the way
// out, and leaves what was written whole.
func TestDirectWriteRefused(t *testing.T) {
	pool, err := newAlignedBuffers(2, 256<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.release()
	disk := &fakeDisk{t: t, align: 512, room: 1 << 30}
	d := newDirectFile(refusingDirect{}, disk, func() error { return nil }, 512, pool)
	w, err := newWriter(d, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	for err == nil && d.off == 0 {
		err = w.WritePacket(packet.Packet{Time: t0, Length: 1000, Data: pcapngtest.Pattern(1000, 0)})
	}
	err = errors.Join(err, w.finish())
	if !errors.Is(err, syscall.EINVAL) || !errors.Is(err, ErrDirectRefused) {
		t.Fatalf("error %v, want EINVAL and the way out", err)
	}
	if whole, packets := wholeBlocks(disk.data); whole != len(disk.data) || packets != w.Saved() {
		t.Fatalf("the file holds %d of %d bytes whole and %d packets, Saved() %d", whole, len(disk.data), packets, w.Saved())
	}
}

// The file written with O_DIRECT is opened again through the descriptor
// of the one ringcap created, not by its name, which may lead elsewhere
// by then.
func TestDirectOpensTheCreatedFile(t *testing.T) {
	dir := pcapngtest.Mount(t, "ext4", 64<<20)
	path := filepath.Join(dir, "x.pcapng")
	f, err := createNew(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	target := filepath.Join(dir, "target")
	targetState := rootFile(t, target)
	if err := os.Rename(path, filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	pool, err := newAlignedBuffers(directBuffers, DirectBufferSize)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.release()
	d, why := openDirect(f, func() (*alignedBuffers, error) { return pool, nil })
	if d == nil {
		t.Fatalf("openDirect: %s", why)
	}
	want := pcapngtest.Pattern(d.align, 0)
	if err := d.close(d.writeFull(append(pool.get(), want...), 1), 1); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "moved")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("the created file holds %d bytes (%v), want the %d written", len(got), err, len(want))
	}
	bpftest.Untouched(t, target, targetState)
}
