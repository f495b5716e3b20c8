package writer

import "sync"

// A Release holds a finished file for the work that starts on it once the
// capture is done with it (a command run on it, an upload), and says
// whether the file may be deleted afterwards when Config.MaxFiles wants it
// gone: until then the directory may hold more files than MaxFiles.
//
// The zero Release holds nothing: its file may go at once.
type Release struct {
	state *releaseState
}

type releaseState struct {
	decided chan struct{} // closed once verdict is set
	verdict Verdict
	once    sync.Once
}

// Verdict is what the work on a finished file decided about it.
type Verdict uint8

const (
	// Keep holds the file for good: the work on it did not end as it
	// should, as an upload that did not reach the store.
	Keep Verdict = iota
	// Deletable lets the file go: the work on it is done.
	Deletable
)

// NewRelease returns a Release that holds its file until decide is called
// with the Verdict; the first call decides, later ones are ignored.
func NewRelease() (r Release, decide func(Verdict)) {
	s := &releaseState{decided: make(chan struct{})}
	return Release{s}, func(v Verdict) {
		s.once.Do(func() {
			s.verdict = v
			close(s.decided)
		})
	}
}

// Decided returns a channel that is closed once the Verdict is in.
func (r Release) Decided() <-chan struct{} {
	if r.state == nil {
		decided := make(chan struct{})
		close(decided)
		return decided
	}
	return r.state.decided
}

// Wait returns the Verdict once it is in; the zero Release's at once:
// Deletable.
func (r Release) Wait() Verdict {
	if r.state == nil {
		return Deletable
	}
	<-r.state.decided
	return r.state.verdict
}
