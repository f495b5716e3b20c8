package writer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Every name ringcap writes is a file it creates: O_EXCL fails on
// anything already there, a symbolic link included (dangling or not), so
// that a capture never writes through a link another user planted in a
// shared directory (fs.protected_symlinks is not set everywhere), nor
// truncates or changes the mode of a file it did not create. O_NOFOLLOW
// says the same for the reader; the mode is the one the file is created
// with.
const createFlags = os.O_WRONLY | os.O_CREATE | os.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC

func createNew(path string, mode os.FileMode) (*os.File, error) {
	return os.OpenFile(path, createFlags, mode)
}

// maxTaken bounds the rotated names in a row that may be taken: a
// directory where that many are is one other users fill faster than the
// capture can look.
const maxTaken = 1000

// createOne makes the one file of a capture that does not rotate. With
// Overwrite a regular file there is replaced: unlinked, then created
// anew, so that its owner, mode and other names (hard links) stay as
// they were; anything else there is refused.
func (c Config) createOne() (*os.File, error) {
	f, err := createNew(c.Path, c.FileMode)
	if errors.Is(err, os.ErrExist) {
		if err := c.checkExisting(); err != nil {
			return nil, err
		}
		// A regular file, and Overwrite. Should another user swap a
		// link in meanwhile, unlink removes the link, never its target.
		if err := os.Remove(c.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("replace %s: %w", c.Path, err)
		}
		f, err = createNew(c.Path, c.FileMode)
	}
	if err != nil {
		return nil, fmt.Errorf("create output file: %w", err)
	}
	return f, nil
}

// checkExisting says what stops the one file of a capture from being
// created where something exists: nil for a regular file with Overwrite.
func (c Config) checkExisting() error {
	st, err := os.Lstat(c.Path)
	switch {
	case err != nil:
		return nil // gone, or not to be seen: creating the file says why
	case !st.Mode().IsRegular():
		return notRegular(c.Path, st.Mode())
	case !c.Overwrite:
		return existError(c.Path)
	}
	return nil
}

// notRegular refuses something at -w that is not a regular file:
// ringcap neither writes into it nor replaces it, --force or not.
func notRegular(path string, mode fs.FileMode) error {
	fix := "give a new file name, or -w - for standard output"
	switch {
	case mode.IsDir():
		fix = "give a file name in it, such as " + filepath.Join(path, "capture.pcapng")
	case mode&fs.ModeSymlink != 0:
		fix = "give a new file name (ringcap does not write through links), or -w - for standard output"
	case mode&fs.ModeNamedPipe != 0:
		fix = "give a new file name, or -w - with standard output sent into the pipe"
	}
	return fmt.Errorf("-w %s is %s, not a regular file: %s", path, kind(mode), fix)
}

// kind names what a file is, for a message.
func kind(mode fs.FileMode) string {
	switch {
	case mode.IsRegular():
		return "a file"
	case mode&fs.ModeSymlink != 0:
		return "a symbolic link"
	case mode.IsDir():
		return "a directory"
	case mode&fs.ModeDevice != 0:
		return "a device"
	case mode&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case mode&fs.ModeSocket != 0:
		return "a socket"
	}
	return "a special file"
}

// kindAt names what is at path, for a message.
func kindAt(path string) string {
	st, err := os.Lstat(path)
	if err != nil {
		return "something that is gone again"
	}
	return kind(st.Mode())
}

// checkDir refuses a -w whose directory is missing, or is not one.
func (c Config) checkDir() error {
	dir := filepath.Dir(c.Path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("-w %s: there is no directory %s: create it first (mkdir -p %s), or give a file in one that exists", c.Path, dir, dir)
	case errors.Is(err, syscall.ENOTDIR) || err == nil && !st.IsDir():
		return fmt.Errorf("-w %s: %s is not a directory: give a file in a directory", c.Path, dir)
	}
	// One not to be seen (a user without the permission) is left to
	// creating the file, which says why, after what ringcap needs first.
	return nil
}

// removeCreated deletes f, a file ringcap just created, if its name
// still leads to it.
func removeCreated(f *os.File) {
	var created, named unix.Stat_t
	if unix.Fstat(int(f.Fd()), &created) == nil && unix.Lstat(f.Name(), &named) == nil &&
		created.Dev == named.Dev && created.Ino == named.Ino {
		os.Remove(f.Name())
	}
}

// mine reports whether st, from lstat, is a file -W may delete: a
// regular file (a link is never followed) owned by the user ringcap
// writes as.
func mine(st fs.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && st.Mode().IsRegular() && int(sys.Uid) == os.Geteuid()
}

// adoptable reports whether st, from lstat, is a file an earlier run may
// have left: one of ringcap's (mine) with no other name. A hard link
// another user made to a file of root's, under a name as ringcap's, would
// otherwise be counted, uploaded and deleted as a capture.
func adoptable(st fs.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && mine(st) && sys.Nlink == 1
}

// seqFile keeps the last number a rotating capture gave a file, so that
// numbers go on once the files are gone (uploaded and deleted, or moved
// by -z): a run started again within the second takes no name an
// earlier one had, here or in a store, and names sort in time across
// runs. It is a small file beside the captures (.big.ringcap-seq for
// big.pcapng) that ringcap creates itself, never an attribute of a
// directory it did not make.
type seqFile struct{ f *os.File }

// seqPath is where c's number is kept.
func (c Config) seqPath() string {
	base := c.base()
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
func (c Config) legacySeq() int {
	buf := make([]byte, 32)
	n, err := unix.Getxattr(filepath.Dir(c.Path), "user.ringcap.seq."+filepath.Base(c.base()), buf)
	if err != nil {
		return 0
	}
	seq, _ := strconv.Atoi(string(buf[:n]))
	return seq
}
