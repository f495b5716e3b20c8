package writer

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/capture/packet"
)

// Counts are an interface's cumulative counters, as the capture reads them.
type Counts struct {
	Received uint64 // frames seen
	Dropped  uint64 // selected frames lost before they reached the ring
}

// Config describes a capture's output.
type Config struct {
	// Path is the file to write, "-" for standard output. With a rotating
	// Policy it is the base of the names: big.pcapng gives
	// big_00001_20261126120000.pcapng, big_00002_..., sortable by name as
	// dumpcap's are.
	Path string
	// Options describe the files' header blocks.
	Options Options
	// Policy says when a new file starts.
	Policy Policy
	// MaxFiles keeps at most this many files, deleting the oldest of
	// those named as this capture names them, an earlier run's first, as
	// tcpdump's -W does. It needs a rotating Policy; 0 keeps all.
	MaxFiles int
	// Overwrite replaces a regular file at Path instead of refusing it:
	// it is unlinked and created anew. Nothing else there is ever
	// replaced or written into, and rotated names are never replaced: a
	// taken one is skipped for the next number.
	Overwrite bool
	// Buffered writes through the page cache even where the file system
	// takes O_DIRECT (see direct.go).
	Buffered bool
	// Pipe says Path is a named pipe that a reader holds open, or is about
	// to (as Wireshark does with the pipe it gives an extcap): it is opened
	// for writing, never created, and written as standard output is: one
	// file, through the page cache, never rotated, written back, handed to
	// Finished or deleted. Without Pipe a named pipe at Path is refused.
	Pipe bool
	// FileMode is the new files' permissions; 0 means 0600, since
	// captures hold other people's data.
	FileMode os.FileMode
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Counters returns every interface's counts; Files reads them when a
	// file starts and ends, for its Interface Statistics Blocks. nil
	// writes no statistics.
	Counters func() ([]Counts, error)
	// Finished is called with the path of each file once it is complete
	// on disk: flushed, written back (writeBack) and closed. It must not
	// block. The Release it returns holds the file for what it starts on
	// it (a command, an upload) until MaxFiles may delete it. nil: every
	// file may go at once.
	Finished func(path string) Release
	// Adopt is called at Create with each file an earlier capture with
	// this rotation left (Earlier), oldest first (with Compress, one left
	// uncompressed once it is compressed, by then from another goroutine): MaxFiles counts them
	// and deletes them first, each once its Release lets it go. nil: they
	// may go at once.
	Adopt func(path string) Release
	// Note is told what the user should know while files are created: a
	// rotated name that was taken, a number file that is not ringcap's.
	// nil says nothing.
	Note func(line string)
	// Compress compresses each finished file beside the capture before
	// it is handed to Finished, under its name with the kind's extension;
	// MaxFiles counts it so. Standard output is refused.
	Compress Compression
	// CompressWith, if set, compresses each finished file for Compress
	// as Compression.CompressFile does, in place of this process's own
	// goroutine at the lowest priority: ringcap starts a process of its
	// own, at the lowest priority (LowerProcessPriority), from a locked
	// thread, so that it may die with that thread (Pdeathsig).
	CompressWith func(kind Compression, path string, mode os.FileMode) (string, error)
	// CompressFailed is told of each file that could not be compressed
	// (a CompressError): it is kept and handed on as written. nil says
	// nothing.
	CompressFailed func(err error)
}

func (c Config) note(format string, args ...any) {
	if c.Note != nil {
		c.Note(fmt.Sprintf(format, args...))
	}
}

// Check reports what would stop the output from being created, so that a
// capture can refuse before it starts.
func (c Config) Check() error {
	if c.MaxFiles > 0 && !c.Policy.Rotates() {
		return ErrMaxFilesWithoutRotation
	}
	if c.Pipe {
		if c.Compress != NoCompression {
			return errors.New("a named pipe is never a finished file to compress")
		}
		if c.Policy.Rotates() {
			return errors.New("rotation needs a file name, not a named pipe")
		}
		return checkPipe(c.Path)
	}
	if c.Path == "-" {
		if c.Compress != NoCompression {
			return ErrCompressStdout
		}
		if c.Policy.Rotates() {
			return errors.New("rotation needs a file name, not standard output")
		}
		return nil
	}
	if err := checkDir(c.Path); err != nil {
		return err
	}
	if c.Policy.Rotates() {
		// Numbered names are checked as each file is created; a
		// directory as the base of the names is a file name forgotten.
		if st, err := os.Lstat(c.Path); err == nil && st.IsDir() {
			return &NotRegularError{c.Path, st.Mode()}
		}
		return nil
	}
	if c.Compress != NoCompression {
		if err := checkExisting(c.Path+c.Compress.Ext(), c.Overwrite); err != nil {
			return err
		}
	}
	return checkExisting(c.Path, c.Overwrite)
}

// Files writes a capture into one file, or into a series of files as the
// Policy says. Every file is a complete pcapng file on its own. It
// composes the parts that decide when a file ends (rotation), what it is
// called (naming), which files stay (retention) and how each is written
// (sinkOpener).
type Files struct {
	header   Options
	now      func() time.Time
	counters func() ([]Counts, error)
	finished func(path string) Release

	rotation   rotation
	names      *naming
	retention  *retention
	sinks      *sinkOpener
	compressor *compressor  // nil: files are handed on as written
	last       finishedFile // the file finished last

	cur      *file
	opened   int // files this capture created
	progress progress
}

// file is the file being written.
type file struct {
	path  string
	f     *os.File // nil for standard output and a named pipe
	pipe  *os.File // the named pipe (Config.Pipe); nil otherwise
	w     *Writer
	start time.Time
	base  []Counts // counters when the file started
	ended bool     // finish ran: its bytes and packets are in the progress
}

// progress is what other goroutines read while the files are written (as
// the metrics do), updated on Flush and as each file ends.
type progress struct {
	endedBytes   int64  // bytes in the files that ended
	endedPackets uint64 // packets those files kept

	bytes    atomic.Int64
	saved    atomic.Uint64
	finished atomic.Uint64
	current  atomic.Pointer[string]
}

// Create opens the first file.
func Create(cfg Config) (*Files, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.FileMode == 0 {
		cfg.FileMode = 0o600
	}
	files := &Files{
		header:    cfg.Options,
		now:       cfg.Now,
		counters:  cfg.Counters,
		finished:  cfg.Finished,
		rotation:  rotation{policy: cfg.Policy},
		names:     &naming{path: cfg.Path, rotates: cfg.Policy.Rotates(), mode: cfg.FileMode, overwrite: cfg.Overwrite, note: cfg.note, pipe: cfg.Pipe},
		retention: &retention{max: cfg.MaxFiles},
		sinks:     &sinkOpener{buffered: cfg.Buffered, bufferSize: cfg.Options.BufferSize},
	}
	if cfg.Path != "-" && !cfg.Pipe {
		removePartials(cfg.Path, cfg.Policy.Rotates())
	}
	if cfg.Compress != NoCompression {
		failed := cfg.CompressFailed
		if failed == nil {
			failed = func(error) {}
		}
		files.compressor = &compressor{kind: cfg.Compress, mode: cfg.FileMode, overwrite: cfg.Overwrite, failed: failed, with: cfg.CompressWith}
	}
	if cfg.Policy.Rotates() {
		earlier, err := cfg.Earlier()
		if err != nil {
			return nil, err
		}
		files.names.resume(earlier)
		files.adopt(earlier, cfg.Adopt)
		// Room first, on a disk an earlier run filled.
		if err := files.retention.prune(); err != nil {
			files.names.close()
			return nil, err
		}
	}
	// The first file counts from zero: the frames the program saw before
	// it was created belong to it.
	if err := files.open(cfg.Now(), make([]Counts, len(cfg.Options.Interfaces))); err != nil {
		files.names.close()
		return nil, err
	}
	return files, nil
}

// adopt counts the files an earlier run left (from Earlier), oldest
// first, for retention, each held by the Release adopt returns for it; a
// nil adopt holds none. adopt is called whether files are deleted or
// not. With a Compression, one the earlier run left uncompressed (its
// compression cut short) is compressed first, and adopted so.
func (fs *Files) adopt(earlier []string, adopt func(path string) Release) {
	if adopt == nil {
		adopt = func(string) Release { return Release{} }
	}
	for _, path := range earlier {
		if fs.compressor != nil && !strings.HasSuffix(path, fs.compressor.kind.Ext()) {
			fs.retention.add(fs.compressor.add(path, adopt))
			continue
		}
		fs.retention.add(finishedFile{path: path, release: adopt(path)})
	}
}

// open starts the next file at start, with the counters then.
func (fs *Files) open(start time.Time, base []Counts) error {
	cur := &file{path: "-", start: start, base: base}
	switch {
	case fs.names.pipe:
		p, err := openPipe(fs.names.path)
		if err != nil {
			return err
		}
		cur.path, cur.pipe = p.Name(), p
	case !fs.names.toStdout():
		f, err := fs.names.create(start)
		if err != nil {
			return err
		}
		cur.path, cur.f = f.Name(), f
		fs.opened++
	}
	w, err := newWriter(fs.sinks.open(cur.f, cur.pipe), fs.header)
	if err == nil {
		// Written at once, so that a file that cannot be written is
		// known before frames go to it.
		if err = w.wait(); err != nil {
			w.finish()
		}
	}
	if err != nil {
		if cur.f != nil {
			// A file without its header blocks holds nothing and
			// would not open: leave none behind.
			removeCreated(cur.f)
			cur.f.Close()
		}
		if cur.pipe != nil {
			cur.pipe.Close()
		}
		return fmt.Errorf("%s: %w", cur.path, err)
	}
	cur.w = w
	fs.cur = cur
	fs.progress.current.Store(&cur.path)
	fs.updateProgress()
	fs.rotation.started(start)
	return fs.retention.prune()
}

// IOMode says how the current file is written: "direct I/O", or
// buffered and why.
func (fs *Files) IOMode() string { return fs.sinks.mode }

// finish ends the current file at end: statistics, flush, write-back,
// close. It returns the counters read for the statistics, the next
// file's base. A file is finished once, whether that succeeds or not, and
// is closed either way.
func (fs *Files) finish(end time.Time) ([]Counts, error) {
	cur := fs.cur
	if cur.ended {
		return cur.base, nil
	}
	cur.ended = true
	counts, statsErr := fs.writeStats(cur, end)
	err := cur.w.finish()
	fs.progress.endedBytes += cur.w.Size()
	fs.progress.endedPackets += cur.w.Saved()
	fs.progress.saved.Store(fs.progress.endedPackets)
	fs.progress.bytes.Store(fs.progress.endedBytes)
	if err = errors.Join(statsErr, cur.close(err)); err != nil {
		return nil, err
	}
	if cur.f != nil {
		fs.progress.finished.Add(1)
		fs.last = fs.handOn(cur.path)
		fs.retention.add(fs.last)
	}
	return counts, nil
}

// handOn passes a finished file to what follows it: the compressor, if
// any, then Finished.
func (fs *Files) handOn(path string) finishedFile {
	if fs.compressor != nil {
		return fs.compressor.add(path, fs.release)
	}
	return finishedFile{path: path, release: fs.release(path)}
}

// release hands a finished file, under the name it has by then, to
// Finished.
func (fs *Files) release(path string) Release {
	if fs.finished == nil {
		return Release{}
	}
	return fs.finished(path)
}

// close writes the file back, unless writing it failed (err), and closes
// it.
func (cur *file) close(err error) error {
	if cur.pipe != nil {
		if cerr := cur.pipe.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", cur.path, cerr)
		}
		return err
	}
	if cur.f == nil {
		return err
	}
	if err == nil {
		if err = writeBack(cur.f); err != nil {
			err = fmt.Errorf("write back %s: %w", cur.path, err)
		}
	}
	if cerr := cur.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close %s: %w", cur.path, cerr)
	}
	return err
}

// writeBack returns once every byte of f is written to its disk. Not
// fsync: that also commits the file system's journal and flushes the
// disk's own cache, and a flush stalls every write to the disk meanwhile
// (20-140 ms each under load in a test of a million frames a second with
// 64 MiB files, where a capture lost 10-22% of its frames at the
// rotations; none without). What a power cut could still take is the
// disk's cache and the journal's last few seconds, as for any program
// that does not call fsync, tcpdump included.
func writeBack(f *os.File) error {
	return unix.SyncFileRange(int(f.Fd()), 0, 0,
		unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
}

// writeStats appends the file's Interface Statistics Blocks: the counters
// now, less those when the file started.
func (fs *Files) writeStats(cur *file, end time.Time) ([]Counts, error) {
	if fs.counters == nil {
		return cur.base, nil
	}
	counts, err := fs.counters()
	if err != nil {
		return nil, err
	}
	// Counters may already count an interface that no packet has
	// brought into the file yet.
	counts = counts[:min(len(counts), len(cur.base))]
	stats := make([]Stats, len(counts))
	for i, c := range counts {
		stats[i] = Stats{Start: cur.start, End: end,
			Received: c.Received - cur.base[i].Received, Dropped: c.Dropped - cur.base[i].Dropped}
	}
	return counts, cur.w.WriteStats(stats)
}

// AddInterface adds an interface to the current file, and to the files
// after it; packets name it by its position, after the others.
func (fs *Files) AddInterface(ifc Interface) error {
	fs.header.Interfaces = append(slices.Clip(fs.header.Interfaces), ifc)
	fs.cur.base = append(fs.cur.base, Counts{})
	return fs.cur.w.AddInterface(ifc)
}

func (fs *Files) rotate(at time.Time) error {
	counts, err := fs.finish(at)
	if err != nil {
		return err
	}
	return fs.open(at, counts)
}

// WritePacket writes a frame into the current file, first starting a new
// one if the policy says so.
func (fs *Files) WritePacket(p packet.Packet) error {
	if at, ok := fs.rotation.due(p.Time, fs.cur.w); ok {
		if err := fs.rotate(at); err != nil {
			return err
		}
	}
	// The counters other goroutines read are updated on Flush, which a
	// capture calls at least once a second, not with locked stores for
	// every packet.
	return fs.cur.w.WritePacket(p)
}

// Flush writes buffered packets out.
func (fs *Files) Flush() error {
	err := fs.cur.w.Flush()
	fs.updateProgress()
	return err
}

// Idle is Flush for a moment when no frame is on its way, for a live
// capture whose ring is empty: it also ends the current file if it is past
// its age although no frame came to end it. Rotating by the clock only
// then keeps frames that are still waiting in the ring out of a file that
// starts after them.
func (fs *Files) Idle() error {
	if at, ok := fs.rotation.dueByAge(fs.now()); ok {
		if err := fs.rotate(at); err != nil {
			return err
		}
	}
	return fs.Flush()
}

// Close finishes the current file, and returns once every file is
// compressed (Config.Compress) and the files that MaxFiles deletes are
// gone: after their Releases let them go.
func (fs *Files) Close() error {
	_, err := fs.finish(fs.now())
	fs.names.close()
	fs.sinks.release()
	if fs.compressor != nil {
		fs.compressor.wait()
		if fs.last.compressed != nil {
			// Current names the last file as it is now.
			last := fs.last.name()
			fs.progress.current.Store(&last)
		}
	}
	return errors.Join(err, fs.retention.wait())
}

func (fs *Files) updateProgress() {
	if !fs.cur.ended {
		fs.progress.bytes.Store(fs.progress.endedBytes + fs.cur.w.Size())
		fs.progress.saved.Store(fs.progress.endedPackets + fs.cur.w.Saved())
	}
}

// Bytes returns the bytes written into all files up to the last Flush,
// buffered ones included; safe to call from any goroutine.
func (fs *Files) Bytes() int64 { return fs.progress.bytes.Load() }

// Saved returns how many packets reached the files, as of the last Flush:
// after a write error, those the files kept, which may be fewer than were
// written. Safe to call from any goroutine.
func (fs *Files) Saved() uint64 { return fs.progress.saved.Load() }

// Finished returns how many files are complete on disk; safe to call from
// any goroutine.
func (fs *Files) Finished() uint64 { return fs.progress.finished.Load() }

// Count returns how many files this capture has started.
func (fs *Files) Count() int { return fs.opened }

// Current returns the path of the file being written, and after Close
// the last file's, compressed; safe to call from any goroutine.
func (fs *Files) Current() string { return *fs.progress.current.Load() }
