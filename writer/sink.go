package writer

import (
	"fmt"
	"io"
	"os"
)

// A blockSink puts a Writer's complete pcapng blocks into its file: it
// lends the Writer a buffer to fill, and writes out what the Writer hands
// back. cachedSink writes through the page cache (or into any io.Writer),
// directFile with O_DIRECT (direct.go).
type blockSink interface {
	// start returns the first buffer to fill, the length at which it is
	// full, and whether it is the sink's memory, which may not grow past
	// its capacity.
	start() (buf []byte, full int, fixed bool)
	// spill writes out a full buffer, and returns the buffer to go on
	// filling and how many bytes the sink added to the file after buf's
	// blocks. packets counts the packets written so far, buf's included.
	spill(buf []byte, packets uint64) (next []byte, padding int, err error)
	// flush writes out the blocks of buf not written yet, and returns the
	// buffer to go on filling.
	flush(buf []byte, packets uint64) ([]byte, error)
	// wait returns once the file holds everything flushed.
	wait() error
	// close writes out the rest of buf and ends the writes; buf is the
	// sink's again.
	close(buf []byte, packets uint64) error
	// saved is how many packets reached the file.
	saved() uint64
}

// cachedSink writes blocks to out as they are: through the page cache
// into a file, or into a pipe or any other io.Writer.
type cachedSink struct {
	out     io.Writer
	buf     []byte
	full    int
	recycle func([]byte) // takes buf back at close; nil: nothing does

	written      int64  // bytes of out that hold complete blocks
	savedPackets uint64 // packets in those bytes
	err          error  // sticky: a failed write ends the file
}

// newCachedSink writes to out from buffers of size bytes (0:
// DefaultBufferSize), reusing spare if it is large enough.
func newCachedSink(out io.Writer, size int, spare []byte, recycle func([]byte)) *cachedSink {
	if size <= 0 {
		size = DefaultBufferSize
	}
	// Room for the block that takes the buffer past its size.
	if want := size + 4096; cap(spare) < want {
		spare = make([]byte, 0, want)
	}
	return &cachedSink{out: out, buf: spare[:0], full: size, recycle: recycle}
}

func (c *cachedSink) start() ([]byte, int, bool) { return c.buf, c.full, false }

func (c *cachedSink) spill(buf []byte, packets uint64) ([]byte, int, error) {
	next, err := c.flush(buf, packets)
	return next, 0, err
}

// flush writes buf out. When the write fails part way, a file is cut back
// to the end of the last block that reached it whole.
func (c *cachedSink) flush(buf []byte, packets uint64) ([]byte, error) {
	if c.err != nil || len(buf) == 0 {
		return buf, c.err
	}
	n, err := c.out.Write(buf)
	if err == nil {
		c.written += int64(n)
		c.savedPackets = packets
		return buf[:0], nil
	}
	// The error names the file and the cause, e.g. "write big.pcapng: no
	// space left on device".
	c.err = err
	if f, ok := c.out.(interface{ Truncate(int64) error }); ok && n > 0 {
		keep, packets := wholeBlocks(buf[:n])
		if terr := f.Truncate(c.written + int64(keep)); terr != nil {
			c.err = fmt.Errorf("%w; cutting the partial block off failed too: %v", c.err, terr)
		} else {
			c.savedPackets += packets
		}
	}
	return buf, c.err
}

func (c *cachedSink) wait() error { return c.err }

func (c *cachedSink) close(buf []byte, packets uint64) error {
	_, err := c.flush(buf, packets)
	if c.recycle != nil {
		c.recycle(buf[:0])
	}
	return err
}

func (c *cachedSink) saved() uint64 { return c.savedPackets }

// sinkOpener opens the sink of each file a capture writes: direct where
// the file system takes O_DIRECT, unless buffered says otherwise, and
// through the page cache elsewhere. It keeps what the files share, one
// after the other: direct I/O's buffers, the page cache's buffer, and why
// the current file is written as it is.
type sinkOpener struct {
	buffered   bool
	bufferSize int             // the page cache's buffer; 0: DefaultBufferSize
	pool       *alignedBuffers // direct I/O's, made for the first direct file
	spare      []byte          // the page cache's, back from the file before
	mode       string
}

// open returns the sink of f, a file ringcap created; when f is nil, of
// pipe, a named pipe; when both are, of standard output.
func (s *sinkOpener) open(f, pipe *os.File) blockSink {
	if d := s.openDirect(f, pipe); d != nil {
		return d
	}
	var out io.Writer = os.Stdout
	switch {
	case f != nil:
		out = f
	case pipe != nil:
		out = pipe
	}
	spare := s.spare
	s.spare = nil
	return newCachedSink(out, s.bufferSize, spare, func(buf []byte) { s.spare = buf })
}

// openDirect returns f's direct sink, or nil with the reason in mode.
func (s *sinkOpener) openDirect(f, pipe *os.File) *directFile {
	switch {
	case pipe != nil:
		s.mode = "buffered: a named pipe"
		return nil
	case f == nil:
		s.mode = "buffered: standard output"
		return nil
	case s.buffered:
		s.mode = "buffered, as asked"
		return nil
	}
	d, why := openDirect(f, func() (*alignedBuffers, error) {
		if s.pool == nil {
			pool, err := newAlignedBuffers(directBuffers, DirectBufferSize)
			if err != nil {
				return nil, err
			}
			s.pool = pool
		}
		return s.pool, nil
	})
	if d == nil {
		s.mode = "buffered: " + why
		return nil
	}
	s.mode = "direct I/O"
	return d
}

// release gives back direct I/O's buffers, once every file is closed.
func (s *sinkOpener) release() {
	if s.pool != nil {
		s.pool.release()
	}
}
