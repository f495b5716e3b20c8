package main

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/ringcap/ringcap/writer"
)

// withOutputFlags names the flags behind the writer's errors, which
// describe only the condition, so that the line ringcap prints says what
// to change. Each of the errors that errors.Join put together is named on
// its own line.
func withOutputFlags(err error) error {
	if parts := joined(err); parts != nil {
		named := make([]error, len(parts))
		for i, part := range parts {
			named[i] = withOutputFlags(part)
		}
		return errors.Join(named...)
	}
	var (
		exists     *writer.ExistError
		notRegular *writer.NotRegularError
		dir        *writer.DirError
		taken      *writer.TakenError
		deleting   *writer.DeleteError
	)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, writer.ErrMaxFilesWithoutRotation):
		return reworded{"--max-files needs a rotation: --rotate-size, --rotate-every or --rotate-packets", err}
	case errors.As(err, &exists):
		return fmt.Errorf("%w: use --force to overwrite it", err)
	case errors.As(err, &notRegular):
		return fmt.Errorf("-w %w: %s", err, notRegularFix(notRegular))
	case errors.As(err, &dir):
		return fmt.Errorf("-w %w", err)
	case errors.As(err, &taken):
		return fmt.Errorf("%w: give -w a directory only ringcap's user can write to", err)
	case errors.As(err, &deleting):
		return reworded{"delete the oldest file for --max-files: " + deleting.Err.Error(), err}
	case errors.Is(err, writer.ErrDirectRefused):
		return fmt.Errorf("%w; --buffered writes through the page cache", err)
	}
	return err
}

// reworded is an error in other words: errors.Is and As still find it.
type reworded struct {
	text string
	err  error
}

func (r reworded) Error() string { return r.text }

func (r reworded) Unwrap() error { return r.err }

// joined returns the errors that errors.Join put together in err, or nil:
// an error whose message is its parts' on lines of their own.
func joined(err error) []error {
	multi, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return nil
	}
	parts := multi.Unwrap()
	lines := make([]string, len(parts))
	for i, part := range parts {
		lines[i] = part.Error()
	}
	if strings.Join(lines, "\n") != err.Error() {
		return nil // fmt.Errorf's, with words of its own
	}
	return parts
}

// notRegularFix says what to give -w instead of what is there.
func notRegularFix(e *writer.NotRegularError) string {
	switch {
	case e.Mode.IsDir():
		return "give a file name in it, such as " + filepath.Join(e.Path, "capture.pcapng")
	case e.Mode&fs.ModeSymlink != 0:
		return "give a new file name (ringcap does not write through links), or -w - for standard output"
	case e.Mode&fs.ModeNamedPipe != 0:
		return "give a new file name, or -w - with standard output sent into the pipe"
	}
	return "give a new file name, or -w - for standard output"
}
