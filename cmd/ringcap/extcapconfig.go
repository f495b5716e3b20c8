package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ringcap/ringcap/bpf"
)

// extcapOption is one field of Wireshark's options dialog for a ringcap
// interface: an `arg` sentence of the extcap grammar (extcap(4)).
// Wireshark passes its value to the capture as --flag VALUE, flag being
// record's own, so that the capture checks it as record does; the type,
// range and validation let the dialog refuse what record would.
type extcapOption struct {
	flag    string // record's flag, without dashes
	display string
	tooltip string
	kind    string // the extcap type: unsigned, boolflag, selector, string
	// bounds is "min,max", for numbers.
	bounds string
	// validation is a regular expression the dialog checks a string
	// against (Qt's syntax, which Go's shares for these).
	validation  string
	placeholder string
	choices     []extcapChoice // for a selector
}

// extcapChoice is one value of a selector.
type extcapChoice struct{ value, display string }

// Patterns of what parseSize and time.ParseDuration take, as far as the
// dialog can check them, or nothing (the flag left out): record refuses
// the rest (a ring size that is not a power of two, a duration of 0) when
// the capture starts.
const (
	sizePattern     = `^([0-9]+ *([KkMmGg]([Ii][Bb])?|[Bb])? *)?$`
	durationPattern = `^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))*$`
)

// extcapOptions are the dialog's fields, in its order.
func extcapOptions() []extcapOption {
	return []extcapOption{
		{flag: "mtu", display: "Frames above an L3 length of", kind: "unsigned", bounds: fmt.Sprintf("0,%d", math.MaxUint16),
			tooltip: "select frames whose L3 length (after the Ethernet header and VLAN tags) exceeds this many bytes, as --mtu"},
		{flag: "all", display: "All frames, whatever their length", kind: "boolflag",
			tooltip: "select every frame; the capture filter still narrows it, as --all"},
		{flag: "snaplen", display: "Snap length", kind: "unsigned", bounds: fmt.Sprintf("0,%d", bpf.MaxSnapLen),
			tooltip: "bytes of each frame to keep; 0 keeps whole frames, as -s"},
		{flag: "direction", display: "Direction", kind: "selector", tooltip: "frames received, sent, or both, as -Q",
			choices: []extcapChoice{{"inout", "received and sent"}, {"in", "received"}, {"out", "sent"}}},
		{flag: "hook", display: "Hook for received frames", kind: "selector",
			tooltip: "auto: XDP in native mode where the driver runs it and it costs less than tc, else tcx ingress, as --hook",
			choices: []extcapChoice{{"auto", "auto"}, {"xdp", "XDP"}, {"tc", "tcx ingress"}}},
		{flag: "ring-size", display: "Ring size", kind: "string", validation: sizePattern, placeholder: "4MiB a ring, 8MiB to 64MiB in all",
			tooltip: "memory of all the rings together, e.g. 64MiB; empty: 4MiB a ring, from 8MiB to 64MiB in all, as --ring-size"},
		{flag: "duration", display: "Stop after", kind: "string", validation: durationPattern, placeholder: "e.g. 30s or 10m",
			tooltip: "stop the capture after this long, e.g. 30s or 10m; empty: when Wireshark stops it, as --duration"},
	}
}

// printExtcapConfig writes the dialog's fields, each with the default of
// the command's flag.
func printExtcapConfig(w io.Writer, c *cli.Context) error {
	for i, o := range extcapOptions() {
		def := flagDefault(lookupFlag(c, o.flag))
		var b strings.Builder
		fmt.Fprintf(&b, "arg {number=%d}{call=--%s}{display=%s}{tooltip=%s}{type=%s}", i, o.flag, o.display, o.tooltip, o.kind)
		for _, attr := range [][2]string{{"range", o.bounds}, {"validation", o.validation}, {"placeholder", o.placeholder}} {
			if attr[1] != "" {
				fmt.Fprintf(&b, "{%s=%s}", attr[0], attr[1])
			}
		}
		if def != "" && o.kind != "selector" {
			fmt.Fprintf(&b, "{default=%s}", def)
		}
		fmt.Fprintln(&b)
		for _, ch := range o.choices {
			fmt.Fprintf(&b, "value {arg=%d}{value=%s}{display=%s}{default=%t}\n", i, ch.value, ch.display, ch.value == def)
		}
		if _, err := io.WriteString(w, b.String()); err != nil {
			return err
		}
	}
	return nil
}

// flagDefault is the value a flag takes when it is not given, as the
// dialog shows it; "" for none, or one that is no value (a duration of
// 0 means none, and record refuses it given).
func flagDefault(f cli.Flag) string {
	switch f := f.(type) {
	case *cli.UintFlag:
		return strconv.FormatUint(uint64(f.Value), 10)
	case *cli.BoolFlag:
		return strconv.FormatBool(f.Value)
	case *cli.StringFlag:
		return f.Value
	}
	return ""
}
