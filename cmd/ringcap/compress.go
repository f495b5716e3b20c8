package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/writer"
)

// --compress compresses each finished file in a process of its own,
// ringcap's hidden compress-file command, whose threads all run at the
// lowest priority: in the capture's process the compressing goroutine
// would hold one of the Go scheduler's Ps while the kernel keeps its
// thread off a busy CPU, and the reader would wait for the other
// (writer.lowerPriority has the figures).

// compressFileCommand compresses one finished file as the capture
// would, and prints the compressed file's name.
func compressFileCommand() *cli.Command {
	return &cli.Command{
		Name:      "compress-file",
		Usage:     "compress a finished capture file (ringcap record --compress runs it)",
		ArgsUsage: "KIND MODE PATH",
		Hidden:    true,
		Action: func(c *cli.Context) error {
			// The capture's Ctrl-C or SIGTERM is not this file's end:
			// ringcap waits for it, and a second Ctrl-C kills both.
			signal.Ignore(os.Interrupt, syscall.SIGTERM)
			kind, ok := writer.ParseCompression(c.Args().Get(0))
			mode, err := strconv.ParseUint(c.Args().Get(1), 8, 32)
			if !ok || kind == writer.NoCompression || err != nil || c.NArg() != 3 {
				return usageError{fmt.Errorf("compress-file: give KIND (gzip, lz4, zstd), MODE (octal) and PATH")}
			}
			// A seccomp profile that forbids lowering the priority
			// does not stop the compression: the file is compressed
			// at the priority ringcap has, as a -z command would be.
			_ = writer.LowerProcessPriority()
			out, err := kind.CompressFile(c.Args().Get(2), os.FileMode(mode))
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(c.App.Writer, out)
			return err
		},
	}
}

// compressInChild is writer.Config.CompressWith: the file compressed by
// ringcap's compress-file command. The compressor calls it on a locked
// thread, so that the command dies with ringcap (Pdeathsig), leaving the
// file as written; the thread takes no_new_privs, so that the command
// gains none of the file capabilities a ringcap binary may have (setcap):
// it needs none.
func compressInChild(kind writer.Compression, path string, mode os.FileMode) (string, error) {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return "", fmt.Errorf("no_new_privs: %w", err)
	}
	cmd := exec.Command("/proc/self/exe", "compress-file", kind.String(), strconv.FormatUint(uint64(mode), 8), path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimPrefix(strings.TrimSpace(stderr.String()), "ringcap: "); msg != "" {
			return "", errors.New(msg)
		}
		return "", err
	}
	return strings.TrimSpace(stdout.String()), nil
}
