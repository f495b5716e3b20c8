package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/capture"
	"github.com/ringcap/ringcap/writer"
)

// ringcap as a Wireshark extcap: Wireshark runs every program in its
// extcap folder with --extcap-interfaces, lists the interfaces they
// answer beside its own, builds an options dialog from --extcap-config,
// checks capture filters with --extcap-capture-filter, and captures with
// --capture --fifo PATH, reading pcapng from the named pipe it made until
// it stops the program with SIGTERM. The capture is record's: the same
// flags, checks and recorder, writing into the pipe as -w - writes to
// standard output. Wireshark shows whatever an extcap writes on stderr
// as an error, so only errors go there, one line each.

// extcapPrefix starts the name of each interface ringcap answers for
// Wireshark: ringcap-eth0, ringcap-any. Wireshark lists it beside its own
// eth0, which the prefix tells apart.
const extcapPrefix = "ringcap-"

// extcapHelp is the page Wireshark's Help button opens.
const extcapHelp = "https://github.com/ringcap/ringcap#wireshark"

func extcapCommand() *cli.Command {
	return &cli.Command{
		Name:  "extcap",
		Usage: "answer Wireshark's extcap calls, so that ringcap's interfaces are in Wireshark's list (make install puts it in Wireshark's extcap folder)",
		UsageText: "ringcap extcap --extcap-interfaces [--extcap-version=VERSION]\n" +
			"ringcap extcap --extcap-interface ringcap-IFACE --extcap-dlts | --extcap-config | --extcap-capture-filter EXPRESSION\n" +
			"ringcap extcap --capture --extcap-interface ringcap-IFACE --fifo PATH [options] [--extcap-capture-filter EXPRESSION]",
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return flagUsageError(c, err)
		},
		Flags: append(extcapFlags(), extcapCaptureFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return badUsage(c, "unexpected argument %q: give the filter with --extcap-capture-filter", c.Args().First())
			}
			return answerExtcap(c)
		},
	}
}

// extcapFlags are the calls Wireshark makes, as its extcap interface
// names them.
func extcapFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "extcap-interfaces", Usage: "list the interfaces ringcap captures on, as ringcap-IFACE"},
		&cli.StringFlag{Name: "extcap-version", Usage: "the version of Wireshark that asks (`VERSION`)"},
		&cli.StringFlag{Name: "extcap-interface", Usage: "the interface `ringcap-IFACE` a call is about"},
		&cli.BoolFlag{Name: "extcap-dlts", Usage: "list the interface's link types"},
		&cli.BoolFlag{Name: "extcap-config", Usage: "list the capture options of Wireshark's dialog"},
		&cli.StringFlag{Name: "extcap-capture-filter", Usage: "the capture filter, a pcap-filter(7) `EXPRESSION`; without --capture, check it"},
		&cli.BoolFlag{Name: "capture", Usage: "capture into --fifo until SIGTERM"},
		&cli.StringFlag{Name: "fifo", Usage: "the named pipe `PATH` Wireshark reads the capture from"},
		// Wireshark's toolbar controls: ringcap offers none, so
		// Wireshark gives neither.
		&cli.StringFlag{Name: "extcap-control-in", Hidden: true},
		&cli.StringFlag{Name: "extcap-control-out", Hidden: true},
	}
}

// extcapCaptureFlags are record's flags that the capture takes, under
// record's names, which --extcap-config gives Wireshark's dialog.
func extcapCaptureFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "direction", Aliases: []string{"Q"}, Value: "inout", Usage: "capture frames received (in), sent (out) or both (inout), as tcpdump's -Q"},
		&cli.StringFlag{Name: "mode", Value: "auto", Usage: "XDP mode: auto (native; never generic), native, or generic"},
		&cli.DurationFlag{Name: "duration", Usage: "stop after `D` (e.g. 30s, 10m)"},
	}, selectionFlags()...)
}

// answerExtcap answers the call the flags make.
func answerExtcap(c *cli.Context) error {
	out := c.App.Writer
	if c.Bool("extcap-interfaces") {
		return printExtcapInterfaces(out)
	}
	if !c.IsSet("extcap-interface") {
		if c.IsSet("extcap-version") {
			_, err := fmt.Fprintln(out, extcapVersionSentence())
			return err
		}
		return badUsage(c, "give --extcap-interfaces, or --extcap-interface ringcap-IFACE with what Wireshark asks of it")
	}
	iface, err := extcapInterface(c.String("extcap-interface"))
	if err != nil {
		return badUsage(c, "%v", err)
	}
	switch {
	case c.Bool("extcap-dlts"):
		// ringcap's frames are Ethernet, whatever the interface.
		_, err = fmt.Fprintln(out, "dlt {number=1}{name=EN10MB}{display=Ethernet}")
		return err
	case c.Bool("extcap-config"):
		return printExtcapConfig(out, c)
	case c.Bool("capture"):
		return extcapCapture(c, iface)
	case c.IsSet("extcap-capture-filter"):
		return checkExtcapFilter(out, c.String("extcap-capture-filter"))
	}
	return badUsage(c, "--extcap-interface %s: give --extcap-dlts, --extcap-config, --extcap-capture-filter or --capture with it", c.String("extcap-interface"))
}

func extcapVersionSentence() string {
	return fmt.Sprintf("extcap {version=%s}{help=%s}", version, extcapHelp)
}

// printExtcapInterfaces lists every interface of the network namespace,
// and any, as Wireshark names them. Wireshark asks whenever it starts,
// as whichever user runs it: this takes no privilege.
func printExtcapInterfaces(w io.Writer) error {
	ifaces, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("list interfaces: %w", err)
	}
	fmt.Fprintln(w, extcapVersionSentence())
	for _, ifc := range ifaces {
		fmt.Fprintf(w, "interface {value=%s%s}{display=ringcap on %s}\n", extcapPrefix, ifc.Name, ifc.Name)
	}
	_, err = fmt.Fprintf(w, "interface {value=%s%s}{display=ringcap on every interface}\n", extcapPrefix, capture.AnyInterface)
	return err
}

// extcapInterface is the interface that value, one of
// printExtcapInterfaces's, names.
func extcapInterface(value string) (string, error) {
	name, ok := strings.CutPrefix(value, extcapPrefix)
	if !ok || name == "" {
		return "", fmt.Errorf("--extcap-interface %s: ringcap's interfaces are named %sIFACE (ringcap extcap --extcap-interfaces lists them)",
			shellWord(value), extcapPrefix)
	}
	return name, nil
}

// checkExtcapFilter answers Wireshark's check of a capture filter as it
// reads the answer: nothing on stdout is a filter it colours green; a
// line is the reason it is red, shown beside it. Both exit 0: an exit
// status other than 0 says the filter could not be checked (amber). The
// check is record's: libpcap's compiler, then ringcap's translation.
func checkExtcapFilter(w io.Writer, expr string) error {
	if strings.TrimSpace(expr) == "" {
		return nil
	}
	if _, err := bpf.CompileFilter(expr); err != nil {
		_, err = fmt.Fprintln(w, oneLine(withFlags(err).Error()))
		return err
	}
	return nil
}

// oneLine keeps a message on one line, as Wireshark shows the first.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// extcapCapture captures on iface into the named pipe --fifo, as record
// would into a file, until Wireshark sends SIGTERM or --duration ends.
// Nothing but an error is written on stderr. Wireshark closing the pipe
// ends the capture as SIGTERM does: the statistics it would have read
// are lost with it.
func extcapCapture(c *cli.Context, iface string) error {
	opts, err := parseExtcapCapture(c, iface)
	if err == nil {
		err = record(c.Context, opts, io.Discard)
	}
	if errors.Is(err, syscall.EPIPE) {
		return nil
	}
	if err != nil {
		releaseReader(c.String("fifo"))
	}
	return err
}

// releaseReader opens the named pipe at path for a moment and closes it,
// so that the reader waiting for the capture (Wireshark's dumpcap) reads
// the end of it rather than waiting on: Wireshark removes the pipe only
// once the extcap has exited, and dumpcap, once in its open, waits for a
// writer however long that takes. The reader may start after ringcap
// gave up (an open without one fails): ringcap tries for a while, and
// gives up at once where no pipe is.
func releaseReader(path string) {
	if st, err := os.Lstat(path); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		return // no pipe there: nothing waits on it
	}
	const wait, every = 2 * time.Second, 20 * time.Millisecond
	for end := time.Now().Add(wait); time.Now().Before(end); time.Sleep(every) {
		fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
			return
		}
		if !errors.Is(err, unix.ENXIO) {
			return // no pipe there, or not one ringcap may open
		}
	}
}

// parseExtcapCapture reads the capture's flags as record reads its own.
// Notes about values changed (a snap length clamped, a ring size rounded)
// are left out: Wireshark would show them as the capture's failure.
func parseExtcapCapture(c *cli.Context, iface string) (recordOptions, error) {
	c.App.ErrWriter = io.Discard
	opts := recordOptions{duration: c.Duration("duration"), quiet: true}
	fifo := c.String("fifo")
	if fifo == "" {
		return opts, badUsage(c, "--capture needs --fifo PATH, the named pipe Wireshark reads")
	}
	if err := checkFlagValues(c); err != nil {
		return opts, err
	}
	if err := checkInterfaceNames([]string{iface}); err != nil {
		return opts, badUsage(c, "%v", err)
	}
	var words []string
	if expr := c.String("extcap-capture-filter"); strings.TrimSpace(expr) != "" {
		words = []string{expr}
	}
	var err error
	if opts.capture, err = parseLive(c, []string{iface}, words); err != nil {
		return opts, err
	}
	opts.output = writer.Config{Path: fifo, Pipe: true}
	if err := opts.output.Check(); err != nil {
		return opts, badUsage(c, "--fifo: %v", err)
	}
	opts.privileges, err = planPrivileges(c, iface == capture.AnyInterface)
	return opts, err
}

// withExtcapVersionValue gives a bare --extcap-version, as people type it
// to ask for the version, the empty value that Go's flags need: Wireshark
// itself passes --extcap-version=4.0.
func withExtcapVersionValue(args []string) []string {
	if len(args) < 2 || args[1] != "extcap" {
		return args
	}
	out := slices.Clone(args)
	for i, a := range out {
		bare := a == "--extcap-version" || a == "-extcap-version"
		if bare && (i+1 == len(out) || strings.HasPrefix(out[i+1], "-")) {
			out[i] = a + "="
		}
	}
	return out
}
