package writer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// naming names a capture's files and creates them, each under a name no
// file had (createFlags). Without rotation it makes the one file at path.
// Rotating, a file's name is path's base, a number and the time the file
// starts: big.pcapng gives big_00001_20261126120000.pcapng,
// big_00002_..., sortable by name as dumpcap's are, the numbers going on
// from an earlier run's.
type naming struct {
	path      string
	rotates   bool
	mode      os.FileMode
	overwrite bool
	note      func(format string, args ...any)
	pipe      bool     // path is a named pipe (Config.Pipe): nothing is created
	seq       int      // the last file's number
	seqFile   *seqFile // where seq is kept for the next run; nil: nowhere
}

// toStdout says the capture goes to standard output ("-"): no file is
// created or named.
func (n *naming) toStdout() bool { return n.path == "-" }

// resume takes the numbers on from an earlier run's: from the files it
// left (earlier, from Earlier) or, once they are gone (uploaded and
// deleted), from the number file (seqFile).
func (n *naming) resume(earlier []string) {
	n.seq = legacySeq(n.path)
	seqf, seq, err := openSeqFile(seqPath(n.path), n.mode)
	if err != nil {
		n.note("%v: the last number is not kept this run, and the next goes on from the files it finds", err)
	}
	n.seqFile, n.seq = seqf, max(n.seq, seq)
	for _, path := range earlier {
		n.seq = max(n.seq, seqOf(path))
	}
}

// nameParts splits path into what a rotated name goes between:
// big.pcapng gives big and .pcapng (big_00001_20261126120000.pcapng).
func nameParts(path string) (base, ext string) {
	ext = filepath.Ext(path)
	base = strings.TrimSuffix(path, ext)
	if ext == "" {
		ext = ".pcapng"
	}
	return base, ext
}

// name is the rotated name of the file numbered seq, started at start.
func (n *naming) name(seq int, start time.Time) string {
	base, ext := nameParts(n.path)
	return fmt.Sprintf("%s_%05d_%s%s", base, seq, start.Format("20060102150405"), ext)
}

// maxTaken bounds the rotated names in a row that may be taken: a
// directory where that many are is one other users fill faster than the
// capture can look.
const maxTaken = 1000

// create makes the next file. A rotated name that is taken (a link or a
// file another user put there to have a capture written into it) is
// passed over for the next number, which keeps the names sortable and
// this run's, and is said once.
func (n *naming) create(start time.Time) (*os.File, error) {
	if !n.rotates {
		return createOne(n.path, n.mode, n.overwrite)
	}
	for taken := 0; ; taken++ {
		n.seq++
		path := n.name(n.seq, start)
		f, err := createNew(path, n.mode)
		if err == nil {
			n.seqFile.store(n.seq)
			return f, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("create output file: %w", err)
		}
		if taken == maxTaken {
			return nil, &TakenError{Taken: taken + 1, Last: path}
		}
		n.note("%s is taken (%s ringcap did not create for this run): skipped, the capture goes on under the next number", path, kindAt(path))
	}
}

func (n *naming) close() { n.seqFile.close() }

// Earlier lists the files an earlier capture with this Config's rotation
// left: those named as it names them (big_00001_20261126120000.pcapng for
// big.pcapng, and with a Compression big_00001_20261126120000.pcapng.zst
// too), oldest first by the time in their names, that are
// ringcap's (see adoptable): never a link, nor another user's file. Without
// rotation it lists none: the one name is refused, or replaced with
// Overwrite.
func (c Config) Earlier() ([]string, error) {
	if !c.Policy.Rotates() || c.Path == "-" {
		return nil, nil
	}
	return earlierFiles(c.Path, c.Compress.Ext())
}

// earlierFiles lists the rotated files named after path, as Earlier, and
// those compressed with the extension compressed ("": none).
func earlierFiles(path, compressed string) ([]string, error) {
	base, ext := nameParts(path)
	dir := filepath.Dir(path)
	entries, err := os.ReadDir(dir)
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
		if compressed != "" {
			rest, _ = strings.CutSuffix(rest, compressed)
		}
		rest, ok = strings.CutSuffix(rest, ext)
		seq, stamp, cut := strings.Cut(rest, "_")
		if !ok || !cut || len(seq) < 5 || len(stamp) != len("20060102150405") || !digits(seq) || !digits(stamp) {
			continue
		}
		if st, err := e.Info(); err != nil || !adoptable(st) {
			continue
		}
		found = append(found, earlier{filepath.Join(dir, e.Name()), stamp, fmt.Sprintf("%020s", seq)})
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

// seqFile keeps the last number a rotating capture gave a file, so that
// numbers go on once the files are gone (uploaded and deleted, or moved
// by -z): a run started again within the second takes no name an
// earlier one had, in the directory or in a store, and names sort in
// time across runs. It is a small file beside the captures
// (.big.ringcap-seq for big.pcapng) that ringcap creates itself, never an
// attribute of a directory it did not make.
type seqFile struct{ f *os.File }

// seqPath is where the number of the files named after path is kept.
func seqPath(path string) string {
	base, _ := nameParts(path)
	return filepath.Join(filepath.Dir(base), "."+filepath.Base(base)+".ringcap-seq")
}

// openSeqFile opens the number file at path, creating it where there is
// none, and returns the number it holds (0 for a new one). One that is
// not ringcap's (a link, another user's file, one with other names) is
// an error, and left alone.
func openSeqFile(path string, mode os.FileMode) (*seqFile, int, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err == nil {
		return &seqFile{f}, 0, nil
	}
	if !errors.Is(err, os.ErrExist) {
		return nil, 0, err
	}
	// An earlier run's, if it is a regular file of this user's with no
	// other name. O_PATH opens nothing, so looking is harmless (opening a
	// fifo would block, a device could act); the file is opened for
	// writing through that descriptor, so the checked file is the one
	// opened, whatever the name leads to by then.
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, 0, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, 0, fmt.Errorf("%s is %s, not ringcap's", path, kindAt(path))
	case int(st.Uid) != os.Geteuid():
		return nil, 0, fmt.Errorf("%s belongs to user %d, not ringcap's", path, st.Uid)
	case st.Nlink != 1:
		return nil, 0, fmt.Errorf("%s has other names (hard links), not ringcap's", path)
	}
	if f, err = os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), os.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
		return nil, 0, fmt.Errorf("open %s: %w", path, errors.Unwrap(err))
	}
	buf := make([]byte, 24)
	n, _ := f.ReadAt(buf, 0)
	seq, _ := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	return &seqFile{f}, max(seq, 0), nil
}

// store keeps seq. A failure (a full disk) only costs the next run the
// numbers of files that are gone by then.
func (s *seqFile) store(seq int) {
	if s == nil {
		return
	}
	b := []byte(strconv.Itoa(seq) + "\n")
	if _, err := s.f.WriteAt(b, 0); err == nil {
		s.f.Truncate(int64(len(b)))
	}
}

func (s *seqFile) close() {
	if s != nil {
		s.f.Close()
	}
}

// legacySeq reads the number earlier versions kept in an attribute of
// the output directory, so that numbers go on across an upgrade. It is
// read, never written.
func legacySeq(path string) int {
	base, _ := nameParts(path)
	buf := make([]byte, 32)
	n, err := unix.Getxattr(filepath.Dir(path), "user.ringcap.seq."+filepath.Base(base), buf)
	if err != nil {
		return 0
	}
	seq, _ := strconv.Atoi(string(buf[:n]))
	return seq
}
