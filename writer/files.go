package writer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/capture/packet"
)

// Policy says when a capture moves on to a new file, combinable as
// dumpcap's -b options are. Zero values are off.
type Policy struct {
	Size    int64         // once the file holds this many bytes (-C)
	Every   time.Duration // once the file is this old (-G)
	Align   bool          // Every's boundaries fall on its multiples in wall-clock time
	Packets uint64        // once the file holds this many packets
	// MaxFiles keeps at most this many files, deleting the oldest of
	// those named as this capture names them, an earlier run's first
	// (-W). 0 keeps all.
	MaxFiles int
}

// Rotates reports whether the policy ever starts a new file.
func (p Policy) Rotates() bool { return p.Size > 0 || p.Every > 0 || p.Packets > 0 }

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
	Options
	Policy
	// Overwrite replaces a regular file at Path instead of refusing it:
	// it is unlinked and created anew. Nothing else there is ever
	// replaced or written into, and rotated names are never replaced: a
	// taken one is skipped for the next number.
	Overwrite bool
	// Buffered writes through the page cache even where the file system
	// takes O_DIRECT (see direct.go).
	Buffered bool
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
	// this rotation left (Earlier), oldest first: MaxFiles counts them
	// and deletes them first, as tcpdump's -W reuses its names across
	// runs, each once its Release lets it go. nil: they may go at once.
	Adopt func(path string) Release
	// Note is told what the user should know while files are created: a
	// rotated name that was taken, a number file that is not ringcap's.
	// nil says nothing.
	Note func(line string)
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
		return errors.New("--max-files needs a rotation: --rotate-size, --rotate-every or --rotate-packets")
	}
	if c.Path == "-" {
		if c.Policy.Rotates() {
			return errors.New("rotation needs a file name, not standard output")
		}
		return nil
	}
	if err := c.checkDir(); err != nil {
		return err
	}
	if c.Policy.Rotates() {
		// Numbered names are checked as each file is created; a
		// directory as the base of the names is a file name forgotten.
		if st, err := os.Lstat(c.Path); err == nil && st.IsDir() {
			return notRegular(c.Path, st.Mode())
		}
		return nil
	}
	return c.checkExisting()
}

// ExistError is an output file that exists and may not be overwritten.
type ExistError struct{ Path string }

func (e *ExistError) Error() string {
	return fmt.Sprintf("output file %s exists: use --force to overwrite it", e.Path)
}

func existError(path string) error { return &ExistError{path} }

// Files writes a capture into one file, or into a series of files as the
// Policy says. Every file is a complete pcapng file on its own.
type Files struct {
	cfg      Config
	seq      int      // the last file's number
	seqFile  *seqFile // where seq is kept for the next run; nil: nowhere
	opened   int      // files this capture created
	cur      *file
	next     time.Time      // when the current file ends by age; zero: never
	finished []finishedFile // files this capture completed, oldest first
	done     int64          // bytes in earlier files
	saved    uint64         // packets in earlier files

	// Deletions for MaxFiles that wait for the file's release.
	deleting  sync.WaitGroup
	deleteMu  sync.Mutex
	deleteErr error

	// What other goroutines read (Bytes, Saved, Finished), as the
	// metrics do while a capture runs.
	bytes      atomic.Int64
	savedTotal atomic.Uint64
	finishedN  atomic.Uint64
	current    atomic.Pointer[string]

	buffers *alignedBuffers // for direct writes, shared by the files
	ioMode  string
}

type finishedFile struct {
	path    string
	release Release // from Config.Finished
}

type file struct {
	path  string
	f     *os.File // nil for standard output
	w     *Writer
	start time.Time
	base  []Counts // counters when the file started
	ended bool     // finish ran: its bytes and packets are in Files' totals
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
	files := &Files{cfg: cfg}
	if cfg.Policy.Rotates() {
		// Numbers go on from an earlier run's, from its files or, once
		// they are gone (uploaded and deleted), from the number file
		// (seqFile).
		earlier, err := cfg.Earlier()
		if err != nil {
			return nil, err
		}
		files.seq = cfg.legacySeq()
		seqf, seq, err := openSeqFile(cfg.seqPath(), cfg.FileMode)
		if err != nil {
			cfg.note("%v: the last number is not kept this run, and the next goes on from the files it finds", err)
		}
		files.seqFile, files.seq = seqf, max(files.seq, seq)
		for _, path := range earlier {
			files.seq = max(files.seq, seqOf(path))
			f := finishedFile{path: path}
			if cfg.Adopt != nil {
				f.release = cfg.Adopt(path)
			}
			files.finished = append(files.finished, f)
		}
		// Room first, on a disk an earlier run filled.
		if err := files.prune(); err != nil {
			files.seqFile.close()
			return nil, err
		}
	}
	// The first file counts from zero: the frames the program saw before
	// it was created belong to it.
	if err := files.open(cfg.Now(), make([]Counts, len(cfg.Interfaces))); err != nil {
		files.seqFile.close()
		return nil, err
	}
	return files, nil
}

func (c Config) base() string { base, _ := c.nameParts(); return base }

// nameParts splits Path into what a rotated name goes between:
// big.pcapng gives big and .pcapng (big_00001_20261126120000.pcapng).
func (c Config) nameParts() (base, ext string) {
	ext = filepath.Ext(c.Path)
	base = strings.TrimSuffix(c.Path, ext)
	if ext == "" {
		ext = ".pcapng"
	}
	return base, ext
}

// name is the rotated name of the file numbered seq, started at start.
func (c Config) name(seq int, start time.Time) string {
	base, ext := c.nameParts()
	return fmt.Sprintf("%s_%05d_%s%s", base, seq, start.Format("20060102150405"), ext)
}

// create makes the next file, under a name no file had: see createFlags.
// A rotated name that is taken (a link or a file another user put there
// to have a capture written into it) is passed over for the next number,
// which keeps the names sortable and this run's, and is said once.
func (fs *Files) create(start time.Time) (*os.File, error) {
	if !fs.cfg.Policy.Rotates() {
		return fs.cfg.createOne()
	}
	for taken := 0; ; taken++ {
		fs.seq++
		path := fs.cfg.name(fs.seq, start)
		f, err := createNew(path, fs.cfg.FileMode)
		if err == nil {
			fs.seqFile.store(fs.seq)
			return f, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("create output file: %w", err)
		}
		if taken == maxTaken {
			return nil, fmt.Errorf("create output file: %d names in a row are taken, up to %s: give -w a directory only ringcap's user can write to", taken+1, path)
		}
		fs.cfg.note("%s is taken (%s ringcap did not create for this run): skipped, the capture goes on under the next number", path, kindAt(path))
	}
}

func (fs *Files) open(start time.Time, base []Counts) error {
	cur := &file{path: fs.cfg.Path, start: start, base: base}
	out := os.Stdout
	if cur.path != "-" {
		f, err := fs.create(start)
		if err != nil {
			return err
		}
		cur.path, cur.f, out = f.Name(), f, f
		fs.opened++
	}
	direct := fs.openDirect(cur.f)
	var spare []byte
	if fs.cur != nil && fs.cur.w.direct == nil {
		// The file before is finished: its buffer is free.
		spare = fs.cur.w.buf
	}
	w, err := newWriter(out, fs.cfg.Options, spare, direct)
	if err == nil {
		// Written at once, so that a file that cannot be written is
		// known before frames go to it.
		err = w.wait()
	}
	if err != nil && direct != nil {
		if w != nil {
			w.finish()
		} else {
			direct.close(direct.buffers.get(), 0, 0)
		}
	}
	if err != nil {
		if cur.f != nil {
			// A file without its header blocks holds nothing and
			// would not open: leave none behind.
			removeCreated(cur.f)
			cur.f.Close()
		}
		return fmt.Errorf("%s: %w", cur.path, err)
	}
	cur.w = w
	fs.cur = cur
	fs.current.Store(&cur.path)
	fs.updateBytes()
	fs.next = fs.nextBoundary(start)
	return fs.prune()
}

// openDirect returns how f is to be written: directly, or, when it
// returns nil, through the page cache. It keeps the reason for IOMode.
func (fs *Files) openDirect(f *os.File) *directFile {
	switch {
	case f == nil:
		fs.ioMode = "buffered: standard output"
		return nil
	case fs.cfg.Buffered:
		fs.ioMode = "buffered, as asked"
		return nil
	}
	d, why := openDirect(f, func() (*alignedBuffers, error) {
		if fs.buffers == nil {
			b, err := newAlignedBuffers(directBuffers, DirectBufferSize)
			if err != nil {
				return nil, err
			}
			fs.buffers = b
		}
		return fs.buffers, nil
	})
	if d == nil {
		fs.ioMode = "buffered: " + why
		return nil
	}
	fs.ioMode = "direct I/O"
	return d
}

// IOMode says how the current file is written: "direct I/O", or
// buffered and why.
func (fs *Files) IOMode() string { return fs.ioMode }

// nextBoundary is when a file started at start ends by age.
func (fs *Files) nextBoundary(start time.Time) time.Time {
	every := fs.cfg.Every
	switch {
	case every <= 0:
		return time.Time{}
	case fs.cfg.Align:
		return start.Truncate(every).Add(every)
	}
	return start.Add(every)
}

// prune deletes the oldest finished files beyond MaxFiles, counting the
// current one. It only ever deletes files named as this capture names
// them (its own, and those an earlier run left), and a file
// still in use only once it is released, so that the directory may hold
// more files than MaxFiles while --post-rotate commands and uploads run,
// and keeps one whose upload did not end.
func (fs *Files) prune() error {
	for fs.cfg.MaxFiles > 0 && len(fs.finished)+1 > fs.cfg.MaxFiles {
		oldest := fs.finished[0]
		fs.finished = fs.finished[1:]
		select {
		case <-oldest.release.Decided(): // room now
			if oldest.release.Wait() == Deletable {
				if err := remove(oldest.path); err != nil {
					return err
				}
			}
			continue
		default:
		}
		fs.deleting.Add(1)
		go func() {
			defer fs.deleting.Done()
			if oldest.release.Wait() != Deletable {
				return
			}
			if err := remove(oldest.path); err != nil {
				fs.deleteMu.Lock()
				fs.deleteErr = errors.Join(fs.deleteErr, err)
				fs.deleteMu.Unlock()
			}
		}()
	}
	return nil
}

// remove deletes a file for MaxFiles. One that is gone already (its
// --post-rotate command moved it, as gzip does) is no error, and one
// that is no longer ringcap's (see mine) is left alone. Only its owner
// may swap another file in after the look in a sticky directory, and
// unlink would then remove a link, never its target.
func remove(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) || err == nil && !mine(st) {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete the oldest file for --max-files: %w", err)
	}
	return nil
}

// finish ends the current file at end: statistics, flush, write-back,
// close.
// It returns the counters read for the statistics, the next file's base.
// A file is finished once, whether that succeeds or not, and is closed
// either way.
func (fs *Files) finish(end time.Time) ([]Counts, error) {
	cur := fs.cur
	if cur.ended {
		return cur.base, nil
	}
	cur.ended = true
	counts, statsErr := fs.writeStats(cur, end)
	err := cur.w.finish()
	fs.done += cur.w.Size()
	fs.saved += cur.w.Saved()
	fs.savedTotal.Store(fs.saved)
	fs.bytes.Store(fs.done)
	if cur.f != nil {
		if err == nil {
			if err = writeBack(cur.f); err != nil {
				err = fmt.Errorf("write back %s: %w", cur.path, err)
			}
		}
		if cerr := cur.f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", cur.path, cerr)
		}
	}
	if err = errors.Join(statsErr, err); err != nil {
		return nil, err
	}
	if cur.f != nil {
		fs.finishedN.Add(1)
		done := finishedFile{path: cur.path}
		if fs.cfg.Finished != nil {
			done.release = fs.cfg.Finished(cur.path)
		}
		fs.finished = append(fs.finished, done)
	}
	return counts, nil
}

// writeBack returns once every byte of f is written to its disk. Not
// fsync: that also commits the file system's journal and flushes the
// disk's own cache, and a flush stalls every write to the disk meanwhile
// (20-140 ms each under load here: at a million frames a second, with
// 64 MiB files, a capture lost 10-22% of its frames at the rotations;
// none without). What a power cut could still take is the disk's cache
// and the journal's last few seconds, as for any program that does not
// call fsync, tcpdump included.
func writeBack(f *os.File) error {
	return unix.SyncFileRange(int(f.Fd()), 0, 0,
		unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
}

// writeStats appends the file's Interface Statistics Blocks: the counters
// now, less those when the file started.
func (fs *Files) writeStats(cur *file, end time.Time) ([]Counts, error) {
	if fs.cfg.Counters == nil {
		return cur.base, nil
	}
	counts, err := fs.cfg.Counters()
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
	fs.cfg.Interfaces = append(slices.Clip(fs.cfg.Interfaces), ifc)
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

// due reports whether the current file ends before a packet of time ts,
// and if so at what time.
func (fs *Files) due(ts time.Time) (time.Time, bool) {
	if !fs.next.IsZero() && !ts.Before(fs.next) {
		// The file ends on the last boundary at or before ts, and the
		// next one starts there: files meet without a gap, and a long
		// silence stays in the file before it instead of leaving a
		// series of empty files.
		periods := ts.Sub(fs.next) / fs.cfg.Every
		return fs.next.Add(periods * fs.cfg.Every), true
	}
	w, p := fs.cur.w, fs.cfg.Policy
	if w.Packets() > 0 && (p.Packets > 0 && w.Packets() >= p.Packets || p.Size > 0 && w.Size() >= p.Size) {
		return ts, true
	}
	return time.Time{}, false
}

// WritePacket writes a frame into the current file, first starting a new
// one if the policy says so.
func (fs *Files) WritePacket(p packet.Packet) error {
	if at, ok := fs.due(p.Time); ok {
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
	fs.updateBytes()
	return err
}

// Idle is Flush for a moment when no frame is on its way, for a live
// capture whose ring is empty: it also ends the current file if it is past
// its age although no frame came to end it. Rotating by the clock only
// then keeps frames that are still waiting in the ring out of a file that
// starts after them.
func (fs *Files) Idle() error {
	if at, ok := fs.due(fs.cfg.Now()); ok && !fs.next.IsZero() && !at.Before(fs.next) {
		if err := fs.rotate(at); err != nil {
			return err
		}
	}
	return fs.Flush()
}

// Close finishes the current file, and returns once the files that
// MaxFiles deletes are gone: after their files were released.
func (fs *Files) Close() error {
	_, err := fs.finish(fs.cfg.Now())
	fs.seqFile.close()
	if fs.buffers != nil {
		fs.buffers.release()
	}
	fs.deleting.Wait()
	return errors.Join(err, fs.deleteErr)
}

func (fs *Files) updateBytes() {
	if !fs.cur.ended {
		fs.bytes.Store(fs.done + fs.cur.w.Size())
		fs.savedTotal.Store(fs.saved + fs.cur.w.Saved())
	}
}

// Bytes returns the bytes written into all files up to the last Flush,
// buffered ones included; safe to call from any goroutine.
func (fs *Files) Bytes() int64 { return fs.bytes.Load() }

// Saved returns how many packets reached the files, as of the last Flush:
// after a write error, those the files kept, which may be fewer than were
// written. Safe to call from any goroutine.
func (fs *Files) Saved() uint64 { return fs.savedTotal.Load() }

// Finished returns how many files are complete on disk; safe to call from
// any goroutine.
func (fs *Files) Finished() uint64 { return fs.finishedN.Load() }

// Count returns how many files this capture has started.
func (fs *Files) Count() int { return fs.opened }

// Current returns the path of the file being written; safe to call from
// any goroutine.
func (fs *Files) Current() string { return *fs.current.Load() }

// Earlier lists the files an earlier capture with this Config's rotation
// left: those named as it names them (big_00001_20261126120000.pcapng for
// big.pcapng), oldest first by the time in their names, that are
// ringcap's (see adoptable): never a link, nor another user's file. Without
// rotation it lists none: the one name is refused, or replaced with
// Overwrite.
func (c Config) Earlier() ([]string, error) {
	if !c.Policy.Rotates() || c.Path == "-" {
		return nil, nil
	}
	base, ext := c.nameParts()
	entries, err := os.ReadDir(filepath.Dir(c.Path))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	type earlier struct{ path, time, seq string }
	var found []earlier
	prefix := filepath.Base(base) + "_"
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		rest, ok = strings.CutSuffix(rest, ext)
		seq, stamp, cut := strings.Cut(rest, "_")
		if !ok || !cut || len(seq) < 5 || len(stamp) != len("20060102150405") || !digits(seq) || !digits(stamp) {
			continue
		}
		if st, err := e.Info(); err != nil || !adoptable(st) {
			continue
		}
		found = append(found, earlier{filepath.Join(filepath.Dir(c.Path), e.Name()), stamp, fmt.Sprintf("%020s", seq)})
	}
	slices.SortFunc(found, func(a, b earlier) int { return strings.Compare(a.time+a.seq, b.time+b.seq) })
	paths := make([]string, len(found))
	for i, f := range found {
		paths[i] = f.path
	}
	return paths, nil
}

// seqOf is the number in a name Earlier found.
func seqOf(path string) int {
	parts := strings.Split(filepath.Base(path), "_")
	n, _ := strconv.Atoi(parts[len(parts)-2])
	return n
}

func digits(s string) bool {
	return strings.Trim(s, "0123456789") == ""
}
