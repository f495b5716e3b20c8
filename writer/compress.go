package writer

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"golang.org/x/sys/unix"
)

// Compression is how a capture's finished files are compressed, beside
// the capture: each is written again, compressed, under its name with the
// kind's extension (big_00001_20261126120000.pcapng.zst), and the file as
// written is removed. Wireshark and its tools read all three kinds.
type Compression uint8

const (
	NoCompression Compression = iota
	Gzip
	LZ4
	Zstd
)

// compressions are the kinds by name, as ParseCompression takes them.
var compressions = []struct {
	name, ext string
}{
	NoCompression: {"none", ""},
	Gzip:          {"gzip", ".gz"},
	LZ4:           {"lz4", ".lz4"},
	Zstd:          {"zstd", ".zst"},
}

// ParseCompression reads a kind by its name: none, gzip, lz4 or zstd.
func ParseCompression(name string) (Compression, bool) {
	for c, k := range compressions {
		if k.name == name {
			return Compression(c), true
		}
	}
	return NoCompression, false
}

func (c Compression) String() string { return compressions[c].name }

// Ext is what the kind adds to a file's name: ".zst" for Zstd.
func (c Compression) Ext() string { return compressions[c].ext }

// newEncoder compresses into w, with one thread (the caller's): the
// capture's reader is to win the CPU, not the compression.
func (c Compression) newEncoder(w io.Writer) (io.WriteCloser, error) {
	switch c {
	case Gzip:
		return gzip.NewWriterLevel(w, gzip.DefaultCompression)
	case LZ4:
		enc := lz4.NewWriter(w)
		return enc, enc.Apply(lz4.ConcurrencyOption(1))
	case Zstd:
		return zstd.NewWriter(w, zstd.WithEncoderConcurrency(1))
	}
	return nil, fmt.Errorf("no encoder for compression %d", c)
}

// CompressError is a finished file that could not be compressed: it is
// kept as written, and handed on so.
type CompressError struct {
	Path string
	Kind Compression
	Err  error
}

func (e *CompressError) Error() string {
	return fmt.Sprintf("compress %s with %s: %v: the file is kept as written", e.Path, e.Kind, e.Err)
}

func (e *CompressError) Unwrap() error { return e.Err }

// ErrCompressStdout is a capture to standard output with a Compression:
// only finished files are compressed, and standard output never is one.
var ErrCompressStdout = errors.New("standard output is never a finished file to compress")

// partialSuffix ends the name of a compressed file being written: hidden
// (.big_00001_20261126120000.pcapng.zst.partial), so that nothing takes
// it for a capture, until it is complete, written back and renamed. One
// that a killed run left is removed by the next run (removePartials).
const partialSuffix = ".partial"

func partialName(compressed string) string {
	return filepath.Join(filepath.Dir(compressed), "."+filepath.Base(compressed)+partialSuffix)
}

// compressor compresses finished files one after another, in the order
// they finish, on a goroutine whose thread runs at the lowest priority
// (nice 19, SCHED_IDLE) and in the idle I/O class: on a busy machine the
// capture's reader gets the CPU first, and its file the disk.
type compressor struct {
	kind      Compression
	mode      os.FileMode
	overwrite bool        // a compressed name that is taken may be replaced, if a regular file
	failed    func(error) // told of each file left uncompressed
	// with compresses a file in place of compress (Config.CompressWith),
	// on the compressor's thread at its priority; nil: compress.
	with func(kind Compression, path string, mode os.FileMode) (string, error)

	mu      sync.Mutex
	queue   []*compressJob
	working bool // a goroutine works through the queue
	idle    sync.WaitGroup
	// lowerFailed: a thread's priority could not be lowered (a seccomp
	// filter), said once.
	lowerFailed atomic.Bool
}

// compressJob is one finished file on its way through the compressor,
// then to what follows it (then).
type compressJob struct {
	path   string
	then   func(path string) Release
	decide func(Verdict)
	// final is the file's name once compressed, or path when it could
	// not be; set before the Release is decided.
	final string
}

// name is the job's file's name: once its Release is decided, the name
// it has on disk.
func (j *compressJob) name() string { return j.final }

// add queues a finished file. Its Release is decided once it is
// compressed (or left as written) and then's Release for it is decided.
func (c *compressor) add(path string, then func(path string) Release) finishedFile {
	release, decide := NewRelease()
	job := &compressJob{path: path, then: then, decide: decide}
	c.mu.Lock()
	c.queue = append(c.queue, job)
	if !c.working {
		c.working = true
		c.idle.Add(1)
		go c.work()
	}
	c.mu.Unlock()
	return finishedFile{path: path, release: release, compressed: job}
}

// work compresses the queued files, and ends when there are none. Its
// thread is locked and never unlocked, so that Go ends the thread with
// the goroutine and no goroutine of the capture's runs at its priority.
func (c *compressor) work() {
	defer c.idle.Done()
	runtime.LockOSThread()
	if c.with == nil {
		if err := lowerPriority(0); err != nil && !c.lowerFailed.Swap(true) {
			c.failed(fmt.Errorf("files are compressed at the capture's priority, not the lowest: %w", err))
		}
	}
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.working = false
			c.mu.Unlock()
			return
		}
		job := c.queue[0]
		c.queue = c.queue[1:]
		c.mu.Unlock()

		job.final = job.path
		if compressed, err := c.run(job.path); err != nil {
			c.failed(&CompressError{job.path, c.kind, err})
		} else {
			job.final = compressed
		}
		next := job.then(job.final)
		go func() { job.decide(next.Wait()) }()
	}
}

// ioprioIdle is the idle I/O class (IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE,
// 0), linux/ioprio.h): its reads and writes go to the disk when no other
// class's wait. The I/O schedulers that take classes (mq-deadline, bfq)
// serve one that waited long enough all the same.
const ioprioIdle = 3 << 13

// lowerPriority sets the thread tid (0: the calling one, which is
// locked) to nice 19, the SCHED_IDLE policy and the idle I/O class, all
// a thread's own on Linux: a SCHED_IDLE thread gives the CPU up to any
// other that wakes, as the reader does when its ring fills, where nice
// 19 alone lets it keep the CPU for its slice.
//
// In the capture's own process that is not enough: the compressing
// goroutine holds one of the Go scheduler's Ps while it runs, and while
// the kernel keeps its thread off a busy CPU the P is held all the same,
// so that the reader waits for the other one (in the sustained run on
// the test VM, zstd at SCHED_IDLE in ringcap's process wrote 0.89 of
// the frames written without in five rounds, about half with files on a
// tmpfs). ringcap compresses in a process of its own (CompressWith,
// LowerProcessPriority), whose threads are all low.
func lowerPriority(tid int) error {
	if tid == 0 {
		tid = unix.Gettid()
	}
	if err := unix.Setpriority(unix.PRIO_PROCESS, tid, 19); err != nil {
		return err
	}
	if err := unix.SchedSetAttr(tid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE, Nice: 19}, 0); err != nil {
		return fmt.Errorf("sched_setattr: %w", err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOPRIO_SET, 1 /* IOPRIO_WHO_PROCESS */, uintptr(tid), ioprioIdle); errno != 0 {
		return fmt.Errorf("ioprio_set: %w", errno)
	}
	return nil
}

// run compresses path with the Config's CompressWith, or in this
// process.
func (c *compressor) run(path string) (string, error) {
	if c.with != nil {
		if dst := path + c.kind.Ext(); c.overwrite && checkExisting(dst, true) == nil {
			// CompressWith refuses a taken name; Overwrite replaces a
			// regular file there, as compress does.
			if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
				return "", err
			}
		}
		return c.with(c.kind, path, c.mode)
	}
	return c.compress(path)
}

// wait returns once every queued file is compressed.
func (c *compressor) wait() { c.idle.Wait() }

// compress writes path compressed beside it and removes it, returning the
// compressed file's name. The compressed file is written under a partial
// name, written back to the disk and renamed, and only then is path
// removed: a run killed at any point leaves path as it was, and never a
// compressed file cut short under the compressed name.
func (c *compressor) compress(path string) (string, error) {
	dst := path + c.kind.Ext()
	in, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer in.Close()
	tmp := partialName(dst)
	out, err := createNew(tmp, c.mode)
	if errors.Is(err, os.ErrExist) && removePartial(tmp) {
		out, err = createNew(tmp, c.mode)
	}
	if err != nil {
		return "", err
	}
	if err = c.encode(out, in); err == nil {
		err = writeBack(out)
	}
	if err == nil {
		err = c.rename(tmp, dst)
	}
	if err != nil {
		removeCreated(out)
		out.Close()
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	if err := os.Remove(path); err != nil {
		return "", fmt.Errorf("%s is written, but %w", dst, err)
	}
	return dst, nil
}

// encode writes in, compressed, into out.
func (c *compressor) encode(out io.Writer, in io.Reader) error {
	enc, err := c.kind.newEncoder(out)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	if _, err := io.CopyBuffer(struct{ io.Writer }{enc}, in, buf); err != nil {
		enc.Close()
		return err
	}
	return enc.Close()
}

// rename gives the partial file the compressed name, which must be free:
// what is there (an earlier file of the one name a capture that does not
// rotate writes) is replaced only with overwrite, and only if it is a
// regular file.
func (c *compressor) rename(tmp, dst string) error {
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EEXIST) && c.overwrite {
		if err := checkExisting(dst, true); err != nil {
			return err
		}
		err = unix.Rename(tmp, dst)
	}
	if errors.Is(err, unix.EEXIST) {
		return &ExistError{dst}
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: tmp, New: dst, Err: err}
	}
	return nil
}

// removePartials removes the partial compressed files a killed run left
// beside the files named after path (all of a rotating capture's, else
// the one file's), whatever the kind: only regular files of ringcap's
// user. It reports nothing: one it cannot remove is only in the way of
// the one compression that wants its name, which says so then.
func removePartials(path string, rotates bool) {
	base, ext := nameParts(path)
	prefix := "." + filepath.Base(path)
	if rotates {
		prefix = "." + filepath.Base(base) + "_"
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, partialSuffix) || !strings.Contains(name, ext+".") {
			continue
		}
		removePartial(filepath.Join(filepath.Dir(path), name))
	}
}

// removePartial removes a partial file if it is ringcap's (mine), and
// reports whether it did.
func removePartial(path string) bool {
	st, err := os.Lstat(path)
	return err == nil && mine(st) && os.Remove(path) == nil
}

// CompressFile compresses the finished capture file at path beside it, as
// Files compresses its own (Config.Compress), on the calling goroutine,
// and returns the compressed file's name; path is removed. The compressed
// file is created with mode. Measurements and tools use it on files a
// capture wrote without compression.
func (c Compression) CompressFile(path string, mode os.FileMode) (string, error) {
	if c == NoCompression {
		return path, nil
	}
	return (&compressor{kind: c, mode: mode}).compress(path)
}

// LowerProcessPriority sets every thread of the calling process to nice
// 19, SCHED_IDLE and the idle I/O class, as the compressor's thread
// (lowerPriority), for a process that does nothing but compress; threads
// the Go runtime starts afterwards inherit it from those that start
// them.
func LowerProcessPriority() error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := lowerPriority(tid); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("thread %d: %w", tid, err)
		}
	}
	return nil
}
