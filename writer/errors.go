package writer

import (
	"errors"
	"fmt"
	"io/fs"
)

// The errors below describe what stops the output; a program adds the
// names of its own settings (command-line flags) where it reports them.

// ExistError is an output file that exists and may not be overwritten
// (Config.Overwrite).
type ExistError struct{ Path string }

func (e *ExistError) Error() string { return fmt.Sprintf("output file %s exists", e.Path) }

// NotRegularError is something at the output path that is not a regular
// file: ringcap neither writes into it nor replaces it, with Overwrite or
// without.
type NotRegularError struct {
	Path string
	Mode fs.FileMode // what is there, from lstat
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s is %s, not a regular file", e.Path, kind(e.Mode))
}

// DirError is an output path whose directory is missing, or is not a
// directory.
type DirError struct {
	Path, Dir string
	Missing   bool // there is no Dir; else Dir is not a directory
}

func (e *DirError) Error() string {
	if e.Missing {
		return fmt.Sprintf("%s: there is no directory %s: create it first (mkdir -p %s), or give a file in one that exists", e.Path, e.Dir, e.Dir)
	}
	return fmt.Sprintf("%s: %s is not a directory: give a file in a directory", e.Path, e.Dir)
}

// TakenError is a rotation that found nothing but taken names: a
// directory that other users fill faster than the capture can look.
type TakenError struct {
	Taken int    // names in a row
	Last  string // the last of them
}

func (e *TakenError) Error() string {
	return fmt.Sprintf("create output file: %d names in a row are taken, up to %s", e.Taken, e.Last)
}

// DeleteError is a file that Config.MaxFiles wanted gone, and that could
// not be deleted.
type DeleteError struct {
	Path string
	Err  error
}

func (e *DeleteError) Error() string { return "delete the oldest file: " + e.Err.Error() }

func (e *DeleteError) Unwrap() error { return e.Err }

var (
	// ErrMaxFilesWithoutRotation is a Config with MaxFiles and a Policy
	// that never starts a new file.
	ErrMaxFilesWithoutRotation = errors.New("a limit on the number of files needs a rotation by size, age or packets")
	// ErrDirectRefused is in the error of a direct write that the file
	// system refused after statx said it takes them; Config.Buffered
	// writes through the page cache instead.
	ErrDirectRefused = errors.New("the file system refused a direct write")
)
