package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// extcapSentence is one line of an extcap answer: its keyword (extcap,
// interface, dlt, arg, value) and its {key=value} attributes.
type extcapSentence struct {
	keyword string
	attrs   map[string]string
}

var extcapAttr = regexp.MustCompile(`\{([a-z]+)=([^{}]*)\}`)

// parseExtcap reads an answer as Wireshark does, sentence by line; a line
// that is not one fails t.
func parseExtcap(t *testing.T, out string) []extcapSentence {
	t.Helper()
	var sentences []extcapSentence
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		keyword, rest, _ := strings.Cut(line, " ")
		s := extcapSentence{keyword: keyword, attrs: make(map[string]string)}
		for _, m := range extcapAttr.FindAllStringSubmatch(rest, -1) {
			s.attrs[m[1]] = m[2]
		}
		if extcapAttr.ReplaceAllString(rest, "") != "" || len(s.attrs) == 0 {
			t.Fatalf("not an extcap sentence: %q", line)
		}
		sentences = append(sentences, s)
	}
	return sentences
}

// Wireshark lists ringcap-IFACE for each interface of the namespace, and
// ringcap-any, after the extcap sentence with the version.
func TestExtcapInterfaces(t *testing.T) {
	p := newVethPair(t)
	got := runCommand(t, "ip", "netns", "exec", p.Rx, binary, "extcap", "--extcap-interfaces", "--extcap-version=4.0")
	want := fmt.Sprintf("extcap {version=%s}{help=%s}\n", testVersion, extcapHelp) +
		"interface {value=ringcap-lo}{display=ringcap on lo}\n" +
		"interface {value=ringcap-" + rxIf + "}{display=ringcap on " + rxIf + "}\n" +
		"interface {value=ringcap-" + rxIf2 + "}{display=ringcap on " + rxIf2 + "}\n" +
		"interface {value=ringcap-any}{display=ringcap on every interface}\n"
	if got.code != 0 || got.stdout != want || got.stderr != "" {
		t.Errorf("--extcap-interfaces: exit %d, stderr %q, stdout\n%s\nwant\n%s", got.code, got.stderr, got.stdout, want)
	}
	parseExtcap(t, got.stdout)
}

// The answers that need neither privileges nor an interface: the version
// alone, the link type, and the calls that make no sense, refused in one
// line with exit status 2.
func TestExtcapAnswers(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	version := fmt.Sprintf("extcap {version=%s}{help=%s}\n", testVersion, extcapHelp)
	for _, tt := range []struct {
		args   []string
		code   int
		stdout string
		stderr string // a part of the one line, for exit status 2
	}{
		{[]string{"--extcap-version"}, 0, version, ""},
		{[]string{"--extcap-version=4.0"}, 0, version, ""},
		{[]string{"--extcap-interface", "ringcap-eth0", "--extcap-dlts"}, 0, "dlt {number=1}{name=EN10MB}{display=Ethernet}\n", ""},
		{[]string{}, 2, "", "give --extcap-interfaces, or --extcap-interface ringcap-IFACE"},
		{[]string{"--extcap-interface", "eth0", "--extcap-dlts"}, 2, "", "--extcap-interface eth0: ringcap's interfaces are named ringcap-IFACE"},
		{[]string{"--extcap-interface", "ringcap-", "--extcap-config"}, 2, "", "ringcap's interfaces are named ringcap-IFACE"},
		{[]string{"--extcap-interface", "ringcap-eth0"}, 2, "", "give --extcap-dlts, --extcap-config, --extcap-capture-filter or --capture"},
		{[]string{"--extcap-interface", "ringcap-eth0", "--capture"}, 2, "", "--capture needs --fifo PATH"},
		{[]string{"--extcap-interface", "ringcap-eth0", "--capture", "--fifo", regular}, 2, "", "--fifo: " + regular + " is a file, not a named pipe"},
		{[]string{"--extcap-interface", "ringcap-eth0", "--capture", "--fifo", filepath.Join(dir, "none")}, 2, "", "no such file or directory"},
		{[]string{"--extcap-interface", "ringcap-eth0", "--capture", "--fifo", regular, "--mtu", "-1"}, 2, "", "--mtu -1: give a number from 0 to 65535"},
		{[]string{"--extcap-interface", "ringcap-eth0", "tcp"}, 2, "", `unexpected argument "tcp"`},
	} {
		got := runRingcap(t, nil, append([]string{"extcap"}, tt.args...)...)
		lines := strings.Count(got.stderr, "\n")
		if got.code != tt.code || got.stdout != tt.stdout || !strings.Contains(got.stderr, tt.stderr) || (tt.code != 0) != (lines == 1) {
			t.Errorf("extcap %s: exit %d, stdout %q, stderr %q; want exit %d, stdout %q, one line with %q",
				strings.Join(tt.args, " "), got.code, got.stdout, got.stderr, tt.code, tt.stdout, tt.stderr)
		}
	}
}

// recordFlag is record's flag named name.
func recordFlag(name string) cli.Flag {
	for _, f := range recordCommand().Flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

// recordRefuses runs record with args (on an interface that does not
// exist, so that a command line record takes fails only at run time) and
// reports whether it refused the command line (exit status 2), and why.
func recordRefuses(t *testing.T, args ...string) (bool, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "x.pcapng")
	got := runRingcap(t, nil, append([]string{"record", "-i", "rc-none0", "-w", out}, args...)...)
	if got.code == 0 {
		t.Fatalf("record %s captured on an interface that does not exist", strings.Join(args, " "))
	}
	return got.code == exitUsage, strings.TrimSpace(got.stderr)
}

// Each field of Wireshark's dialog is a record flag (call), its default
// is record's, and what its range, choices and pattern let through record
// takes, and the edge beyond it record refuses.
func TestExtcapConfig(t *testing.T) {
	got := runRingcap(t, nil, "extcap", "--extcap-interface", "ringcap-eth0", "--extcap-config")
	if got.code != 0 || got.stderr != "" {
		t.Fatalf("--extcap-config: exit %d: %s", got.code, got.stderr)
	}
	defaults := map[string]string{"mtu": "1500", "all": "false", "snaplen": "256", "direction": "inout", "hook": "auto"}
	args := make(map[string]extcapSentence)
	var calls []string
	for _, s := range parseExtcap(t, got.stdout) {
		switch s.keyword {
		case "arg":
			if s.attrs["number"] != strconv.Itoa(len(calls)) || s.attrs["display"] == "" || s.attrs["tooltip"] == "" {
				t.Errorf("arg %v: want number %d, a display and a tooltip", s.attrs, len(calls))
			}
			name, ok := strings.CutPrefix(s.attrs["call"], "--")
			if !ok || recordFlag(name) == nil {
				t.Fatalf("arg %v: call is not one of record's flags", s.attrs)
			}
			calls = append(calls, name)
			args[s.attrs["number"]] = s
			if s.attrs["type"] != "selector" && s.attrs["default"] != defaults[name] {
				t.Errorf("--%s: default %q, record's is %q", name, s.attrs["default"], defaults[name])
			}
			checkExtcapBounds(t, name, s.attrs)
		case "value":
			name := args[s.attrs["arg"]].attrs["call"]
			if refused, why := recordRefuses(t, name, s.attrs["value"]); refused {
				t.Errorf("%s %s, a choice of the dialog, is refused by record: %s", name, s.attrs["value"], why)
			}
			if isDefault := s.attrs["value"] == defaults[strings.TrimPrefix(name, "--")]; s.attrs["default"] != strconv.FormatBool(isDefault) {
				t.Errorf("%s %s: default=%s, record's default is %s", name, s.attrs["value"], s.attrs["default"], defaults[name])
			}
		default:
			t.Errorf("unexpected sentence %q in --extcap-config", s.keyword)
		}
	}
	if want := []string{"mtu", "all", "snaplen", "direction", "hook", "ring-size", "duration"}; !slices.Equal(calls, want) {
		t.Errorf("the dialog offers %q, want %q", calls, want)
	}
}

// checkExtcapBounds checks a number's range against record: its maximum
// is taken, one more refused; and a string's pattern.
func checkExtcapBounds(t *testing.T, name string, attrs map[string]string) {
	t.Helper()
	switch attrs["type"] {
	case "unsigned":
		lo, hi, _ := strings.Cut(attrs["range"], ",")
		max, err := strconv.Atoi(hi)
		if lo != "0" || err != nil {
			t.Fatalf("--%s: range %q", name, attrs["range"])
		}
		if refused, why := recordRefuses(t, "--"+name, hi); refused {
			t.Errorf("--%s %s, the range's end, is refused by record: %s", name, hi, why)
		}
		// Beyond it, snaplen is clamped with a note, the MTU refused.
		if refused, why := recordRefuses(t, "--"+name, strconv.Itoa(max+1)); name == "mtu" && !refused {
			t.Errorf("--mtu %d, past the range, is taken by record: %s", max+1, why)
		}
	case "string":
		checkExtcapPattern(t, name, attrs["validation"])
	}
}

// checkExtcapPattern checks that the dialog's pattern for a string flag
// takes what record parses and refuses what it does not.
func checkExtcapPattern(t *testing.T, name, pattern string) {
	t.Helper()
	re, err := regexp.Compile(pattern)
	if err != nil {
		t.Fatalf("--%s: validation %q: %v", name, pattern, err)
	}
	parses := map[string]func(string) error{
		"ring-size": func(s string) error { _, err := parseSize(s); return err },
		"duration": func(s string) error {
			d, err := time.ParseDuration(s)
			if err == nil && d < 0 {
				err = errors.New("negative")
			}
			return err
		},
	}[name]
	if parses == nil {
		t.Fatalf("--%s: a string with no parser known to this test", name)
	}
	if !re.MatchString("") {
		t.Errorf("--%s: validation %q refuses the empty field, which leaves the flag out", name, pattern)
	}
	for _, s := range []string{"8MiB", "64 MiB", "4096", "1G", "1gib", "16k", "8KB", "8 M B", "-1", "MiB", "8MiB ",
		"30s", "10m", "1h30m", "1.5s", "300ms", "30", "s", "-1s", "1d", "1h 30m"} {
		if match, err := re.MatchString(s), parses(s); match != (err == nil) {
			t.Errorf("--%s %q: the dialog's pattern matches: %v; record parses it: %v", name, s, match, err)
		}
	}
}

// A capture filter is checked as record checks it: nothing on stdout for
// one it takes, its one line for one it refuses, exit status 0 either
// way, which Wireshark reads as checked (green or red).
func TestExtcapFilter(t *testing.T) {
	for _, expr := range []string{"tcp port 80", "icmp or udp", "tcp port", "ip6 and vlan and mpls", "ifname eth0"} {
		got := runRingcap(t, nil, "extcap", "--extcap-interface", "ringcap-eth0", "--extcap-capture-filter", expr)
		refused, why := recordRefuses(t, "--all", expr)
		want := ""
		if refused {
			want = strings.TrimPrefix(why, "ringcap: record: ") + "\n"
		}
		if got.code != 0 || got.stdout != want || got.stderr != "" {
			t.Errorf("--extcap-capture-filter %q: exit %d, stdout %q, stderr %q; want exit 0, stdout %q", expr, got.code, got.stdout, got.stderr, want)
		}
	}
}
