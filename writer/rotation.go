package writer

import "time"

// Policy says when a capture moves on to a new file, combinable as
// dumpcap's -b options are. Zero values are off.
type Policy struct {
	Size    int64         // once the file holds this many bytes (-C)
	Every   time.Duration // once the file is this old (-G)
	Align   bool          // Every's boundaries fall on its multiples in wall-clock time
	Packets uint64        // once the file holds this many packets
}

// Rotates reports whether the policy ever starts a new file.
func (p Policy) Rotates() bool { return p.Size > 0 || p.Every > 0 || p.Packets > 0 }

// rotation says, as its Policy does, when the file being written ends.
type rotation struct {
	policy Policy
	end    time.Time // when the current file ends by age; zero: never
}

// started sets the age at which a file started at start ends.
func (r *rotation) started(start time.Time) {
	every := r.policy.Every
	switch {
	case every <= 0:
		r.end = time.Time{}
	case r.policy.Align:
		r.end = start.Truncate(every).Add(every)
	default:
		r.end = start.Add(every)
	}
}

// dueByAge reports whether the current file is past its age at ts, and
// if so when it ended: on the last boundary at or before ts, where the
// next one starts. Files meet without a gap, and a long silence stays in
// the file before it instead of leaving a series of empty files.
func (r *rotation) dueByAge(ts time.Time) (time.Time, bool) {
	if r.end.IsZero() || ts.Before(r.end) {
		return time.Time{}, false
	}
	periods := ts.Sub(r.end) / r.policy.Every
	return r.end.Add(periods * r.policy.Every), true
}

// due reports whether the current file, holding w's packets, ends before
// a packet of time ts, and if so at what time.
func (r *rotation) due(ts time.Time, w *Writer) (time.Time, bool) {
	if at, ok := r.dueByAge(ts); ok {
		return at, true
	}
	p := r.policy
	if n := w.Packets(); n > 0 && (p.Packets > 0 && n >= p.Packets || p.Size > 0 && w.Size() >= p.Size) {
		return ts, true
	}
	return time.Time{}, false
}
