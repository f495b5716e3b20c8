package main

import (
	"context"
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// readerGoneContext ends once the reader of out, a pipe or a socket, has
// gone: with -w - into ssh (sshdump's remote capture) or a pipe into
// Wireshark, the capture ends when the other side does, rather than at
// the next frame selected, which a narrow selection may not see for
// hours, the programs attached meanwhile. poll reports a pipe whose
// reader closed with POLLERR, a socket whose peer did with POLLHUP, both
// without being asked; a file or a terminal has no reader to lose.
func readerGoneContext(ctx context.Context, out *os.File) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	st, err := out.Stat()
	if err != nil || st.Mode()&(os.ModeNamedPipe|os.ModeSocket) == 0 {
		return ctx, cancel
	}
	// A copy of the descriptor, so that polling never races with out
	// being closed.
	fd, err := unix.Dup(int(out.Fd()))
	if err != nil {
		return ctx, cancel
	}
	go func() {
		defer unix.Close(fd)
		// Every 200 ms, to see the capture end otherwise.
		fds := []unix.PollFd{{Fd: int32(fd)}}
		for ctx.Err() == nil {
			n, err := unix.Poll(fds, 200)
			if err != nil && !errors.Is(err, unix.EINTR) {
				return
			}
			if n > 0 && fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
				cancel()
				return
			}
		}
	}()
	return ctx, cancel
}
