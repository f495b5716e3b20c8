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
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// version is the release; builds may set it with -ldflags "-X main.version=...".
var version = "0.1.0"

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
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintln(c.App.Writer, versionLine()) }
	app := &cli.App{
		Name:  "ringcap",
		Usage: "record selected frames (by default: oversize ones) into pcapng files, through XDP",
		Description: "ringcap attaches an XDP program to interfaces. It passes every frame on untouched and copies the ones " +
			"selected (by default those whose L3 length exceeds --mtu; narrowed by a pcap-filter(7) expression) " +
			"through a BPF ring buffer into pcapng files, rotated as dumpcap rotates them. ringcap replay runs the " +
			"same program over a recorded capture. See also tcpdump(8), dumpcap(1), pcap-filter(7).",
		Version:         version,
		HideHelpCommand: true,
		Writer:          stdout,
		ErrWriter:       stderr,
		Commands:        []*cli.Command{recordCommand(), replayCommand(), interfacesCommand(), extcapCommand(), versionCommand(), completionCommand(), manCommand(), compressFileCommand()},
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "list-interfaces", Aliases: []string{"D"}, Usage: "list the interfaces, as ringcap interfaces does"},
		},
		// Answers --generate-bash-completion for the completion scripts.
		EnableBashCompletion: true,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("unknown command %q: ringcap knows record, replay, interfaces, extcap, version and completion (see ringcap --help)", c.Args().First())
			}
			if c.Bool("list-interfaces") {
				return listInterfaces(c.App.Writer)
			}
			return cli.ShowAppHelp(c)
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		// run decides the exit code; urfave/cli must not exit itself.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	err := app.Run(flagsFirst(app, withExtcapVersionValue(args)))
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "ringcap: %v\n", err)
	if errors.As(err, new(usageError)) {
		return exitUsage
	}
	return exitRuntime
}

// flagsFirst moves a command's arguments behind its flags, so that
// `ringcap replay IN -w OUT` reads as tcpdump users type it: urfave/cli
// stops reading flags at the first argument.
func flagsFirst(app *cli.App, args []string) []string {
	// The completion scripts' question has its own order.
	if len(args) < 2 || slices.Contains(args, "--generate-bash-completion") {
		return args
	}
	cmd := app.Command(args[1])
	if cmd == nil {
		return args
	}
	takesValue := make(map[string]bool)
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, name := range f.Names() {
			takesValue[name] = !isBool
		}
	}
	flags := slices.Clone(args[:2])
	var positional []string
	rest := args[2:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case a == "--":
			positional = append(positional, rest[i:]...)
			i = len(rest)
		case len(a) > 1 && a[0] == '-' && a != "-":
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if takesValue[name] && !strings.Contains(name, "=") && i+1 < len(rest) {
				i++
				flags = append(flags, rest[i])
			}
		default:
			positional = append(positional, a)
		}
	}
	return append(flags, positional...)
}
