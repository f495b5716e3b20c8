package main

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/capture"
)

// The values the flags of record and replay take, and the one line that
// refuses another: the flag, the value, and what to give instead.

// flagHint says what the flag takes, in words that end a refusal: "give
// ...". A flag not named here is described by its usage's placeholder.
func flagHint(f cli.Flag) string {
	switch name := f.Names()[0]; name {
	case "snaplen":
		return fmt.Sprintf("give a number from 0 (whole frames) to %d", bpf.MaxSnapLen)
	case "mtu":
		return fmt.Sprintf("give a number from 0 to %d", math.MaxUint16)
	case "count":
		return "give a number of frames, 1 or more; leave -c out to capture until Ctrl-C"
	case "rotate-packets":
		return "give a number of frames, 1 or more"
	case "max-files":
		return "give a number of files, 1 or more"
	case "duration":
		return "give a duration such as 30s or 10m; leave --duration out to capture until Ctrl-C"
	case "rotate-every":
		return "give a duration of 1s or more, such as 10m (0 rotates by size or packets only)"
	case "upload-timeout":
		return "give a duration of 0s or more, such as 20s"
	case "upload-retry-max":
		return "give a duration such as 30s"
	case "metrics":
		return "give HOST:PORT or :PORT, e.g. 127.0.0.1:9464"
	case "upload":
		return "give s3://BUCKET/PREFIX"
	case "netns":
		return "give an ip netns name, or a path such as /proc/PID/ns/net"
	case "post-rotate":
		return "give a command, such as gzip"
	case "compress":
		return "give gzip, lz4 or zstd (none keeps files as written)"
	case "hook":
		return "give auto, xdp or tc"
	case "mode":
		return "give auto, native or generic"
	case "direction":
		return "give in, out or inout"
	case "ring-size", "wakeup-size", "rotate-size":
		return "give a size such as 8MiB"
	case "file-mode":
		return "give octal permissions such as 0600"
	default:
		return "give " + placeholder(f) + ", or leave --" + name + " out"
	}
}

// placeholder is the name a flag's usage gives its value, between
// backquotes, as urfave/cli shows it in --help.
func placeholder(f cli.Flag) string {
	if d, ok := f.(cli.DocGenerationFlag); ok {
		if _, rest, ok := strings.Cut(d.GetUsage(), "`"); ok {
			if name, _, ok := strings.Cut(rest, "`"); ok {
				return name
			}
		}
	}
	return "a value"
}

// valueRule is a bound on a flag's value, where its type allows more
// than the flag means.
type valueRule struct {
	name string
	ok   func(c *cli.Context) bool
}

// valueRules are the bounds of record's and replay's flags. As in
// tcpdump and dumpcap, a count of 0 is a mistake; a file rotated more
// often than every second is too (dumpcap's -b duration counts seconds).
func valueRules() []valueRule {
	return []valueRule{
		{"mtu", func(c *cli.Context) bool { return c.Uint("mtu") <= math.MaxUint16 }},
		{"count", func(c *cli.Context) bool { return c.Uint64("count") > 0 }},
		{"rotate-packets", func(c *cli.Context) bool { return c.Uint64("rotate-packets") > 0 }},
		{"max-files", func(c *cli.Context) bool { return c.Int("max-files") > 0 }},
		{"duration", func(c *cli.Context) bool { return c.Duration("duration") > 0 }},
		{"rotate-every", func(c *cli.Context) bool {
			d := c.Duration("rotate-every")
			return d == 0 || d >= time.Second
		}},
		{"upload-timeout", func(c *cli.Context) bool { return c.Duration("upload-timeout") >= 0 }},
		{"upload-retry-max", func(c *cli.Context) bool { return c.Duration("upload-retry-max") > 0 }},
	}
}

// checkFlagValues refuses a value given on the command line that its
// flag's type takes and the flag does not: a number out of range, or an
// empty string. An empty expression (-f "") is no filter, as in tcpdump,
// and -w is left to the command.
func checkFlagValues(c *cli.Context) error {
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		if _, ok := f.(*cli.StringFlag); ok && c.IsSet(name) && c.String(name) == "" && name != "filter" && name != "write" {
			return badUsage(c, "--%s is empty: %s", name, flagHint(f))
		}
	}
	for _, r := range valueRules() {
		if c.IsSet(r.name) && !r.ok(c) {
			return badUsage(c, "--%s %v: %s", r.name, c.Value(r.name), flagHint(lookupFlag(c, r.name)))
		}
	}
	return nil
}

func lookupFlag(c *cli.Context, name string) cli.Flag {
	for _, f := range c.Command.Flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

// invalidValue is the flag package's error for a value its type cannot
// take: `invalid value "-1" for flag -snaplen: parse error`.
var invalidValue = regexp.MustCompile(`^invalid value ("(?:[^"\\]|\\.)*") for flag -([^:\s]+): `)

// flagUsageError is a command's usage error: a value its flag's type
// cannot take is one line naming the flag as it was typed (-s, --snaplen)
// and what it takes; any other error as urfave/cli says it.
func flagUsageError(c *cli.Context, err error) error {
	if m := invalidValue.FindStringSubmatch(err.Error()); m != nil {
		if f := lookupFlag(c, m[2]); f != nil {
			value, _ := strconv.Unquote(m[1])
			dashes := "--"
			if len(m[2]) == 1 {
				dashes = "-"
			}
			return badUsage(c, "%s%s %s: %s", dashes, m[2], shellWord(value), flagHint(f))
		}
	}
	return usageError{fmt.Errorf("%s: %w (see ringcap %s --help)", c.Command.Name, err, c.Command.Name)}
}

// shellWord quotes a value as a shell would need it, where it needs it.
func shellWord(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n'\"\\$`") {
		return strconv.Quote(s)
	}
	return s
}

// checkInterfaceNames refuses -i lists that name no interface, or one
// twice, before anything is opened: capture.Open would refuse them later,
// as a failure at run time.
func checkInterfaceNames(names []string) error {
	seen := make(map[string]bool)
	for _, name := range names {
		switch {
		case name == "":
			return errors.New("-i is empty: give an interface name (`ip link` lists them), or any")
		case name == capture.AnyInterface && len(names) > 1:
			return errors.New("-i any is every interface already: give it alone, or name the interfaces")
		case seen[name]:
			return fmt.Errorf("-i %s is given twice: give each interface once", name)
		}
		seen[name] = true
	}
	return nil
}
