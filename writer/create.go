package writer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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

// createOne makes the one file of a capture that does not rotate. With
// overwrite a regular file there is replaced: unlinked, then created
// anew, so that its owner, mode and other names (hard links) stay as
// they were; anything else there is refused.
func createOne(path string, mode os.FileMode, overwrite bool) (*os.File, error) {
	f, err := createNew(path, mode)
	if errors.Is(err, os.ErrExist) {
		if err := checkExisting(path, overwrite); err != nil {
			return nil, err
		}
		// A regular file, and overwrite. Should another user swap a
		// link in meanwhile, unlink removes the link, never its target.
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("replace %s: %w", path, err)
		}
		f, err = createNew(path, mode)
	}
	if err != nil {
		return nil, fmt.Errorf("create output file: %w", err)
	}
	return f, nil
}

// checkExisting says what stops the one file of a capture from being
// created at path where something exists: nil for a regular file with
// overwrite.
func checkExisting(path string, overwrite bool) error {
	st, err := os.Lstat(path)
	switch {
	case err != nil:
		return nil // gone, or not to be seen: creating the file says why
	case !st.Mode().IsRegular():
		return &NotRegularError{path, st.Mode()}
	case !overwrite:
		return &ExistError{path}
	}
	return nil
}

// checkPipe refuses a path where no named pipe is.
func checkPipe(path string) error {
	st, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("named pipe: %w", err)
	}
	if st.Mode()&fs.ModeNamedPipe == 0 {
		return fmt.Errorf("%s is %s, not a named pipe", path, kind(st.Mode()))
	}
	return nil
}

// openPipe opens the named pipe at path for writing, once a reader has it
// open: the open waits for one. O_NOFOLLOW, and the check of what was
// opened, keep a capture from writing into a file, or through a link,
// put at path instead of the pipe.
func openPipe(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open named pipe: %w", err)
	}
	st, err := f.Stat()
	if err == nil && st.Mode()&fs.ModeNamedPipe == 0 {
		err = fmt.Errorf("%s is %s, not a named pipe", path, kind(st.Mode()))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
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

// checkDir refuses a path whose directory is missing, or is not one.
func checkDir(path string) error {
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return &DirError{Path: path, Dir: dir, Missing: true}
	case errors.Is(err, syscall.ENOTDIR) || err == nil && !st.IsDir():
		return &DirError{Path: path, Dir: dir}
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
