package writer

import (
	"errors"
	"os"
	"sync"
)

// retention keeps at most max files of a rotating capture, counting the
// one being written: the oldest finished files beyond it are deleted, an
// earlier run's first (as tcpdump's -W reuses its names across runs), each
// once its Release lets it go. It only ever deletes files named as the
// capture names them, and only while they are ringcap's (remove), so the
// directory may hold more files than max while the work on them runs,
// and keeps those whose Release keeps them.
type retention struct {
	max      int            // 0: every file is kept
	finished []finishedFile // oldest first

	// Deletions that wait for a Release.
	deleting sync.WaitGroup
	mu       sync.Mutex
	err      error
}

type finishedFile struct {
	path    string
	release Release
	// compressed, for a file being compressed, has the name the file
	// has once its Release is decided.
	compressed *compressJob
}

// name is the file's name once its Release is decided.
func (f finishedFile) name() string {
	if f.compressed != nil {
		return f.compressed.name()
	}
	return f.path
}

// add counts a finished file, the newest.
func (r *retention) add(f finishedFile) {
	if r.max > 0 {
		r.finished = append(r.finished, f)
	}
}

// prune deletes the oldest finished files beyond max, counting the current
// one: at once where their Release has let them go, else once it does.
func (r *retention) prune() error {
	for r.max > 0 && len(r.finished)+1 > r.max {
		oldest := r.finished[0]
		r.finished = r.finished[1:]
		select {
		case <-oldest.release.Decided(): // room now
			if oldest.release.Wait() == Deletable {
				if err := remove(oldest.name()); err != nil {
					return err
				}
			}
			continue
		default:
		}
		r.deleting.Add(1)
		go func() {
			defer r.deleting.Done()
			if oldest.release.Wait() != Deletable {
				return
			}
			if err := remove(oldest.name()); err != nil {
				r.mu.Lock()
				r.err = errors.Join(r.err, err)
				r.mu.Unlock()
			}
		}()
	}
	return nil
}

// wait returns once the deletions that wait for a Release are done, with
// their failures.
func (r *retention) wait() error {
	r.deleting.Wait()
	return r.err
}

// remove deletes a file for retention. One that is gone already (a
// command run on it moved it, as gzip does) is no error, and one that is
// no longer ringcap's (see mine) is left alone. Only its owner may swap
// another file in after the look in a sticky directory, and unlink would
// then remove a link, never its target.
func remove(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) || err == nil && !mine(st) {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return &DeleteError{path, err}
	}
	return nil
}
