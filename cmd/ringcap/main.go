// Command ringcap records selected frames from live interfaces into pcapng
// files, through an XDP program that passes every frame on untouched.
//
// The data path: record (this package) opens a capture.Capture, which
// attaches the program and drains its ring into a writer.Writer.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"
)

const version = "0.1.0"

// Exit codes, as tcpdump and most Unix tools use them.
const (
	exitRuntime = 1
	exitUsage   = 2
)

// usageError is bad input on the command line: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func main() {
	os.Exit(run(os.Args, os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	app := &cli.App{
		Name:            "ringcap",
		Usage:           "record selected frames (by default: oversize ones) into pcapng files, through XDP",
		Version:         version,
		HideHelpCommand: true,
		Writer:          stderr,
		ErrWriter:       stderr,
		Commands:        []*cli.Command{recordCommand()},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("unknown command %q: ringcap knows record (see ringcap --help)", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		// run decides the exit code; urfave/cli must not exit itself.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	err := app.Run(args)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "ringcap: %v\n", err)
	if errors.As(err, new(usageError)) {
		return exitUsage
	}
	return exitRuntime
}
