package main

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ringcap/ringcap/bpf/bpftest"
)

// quickStart is the README's quick start example: the pings it describes,
// the commands it shows, and what each printed.
type quickStart struct {
	pings []int // L3 lengths
	steps []quickStep
}

type quickStep struct {
	args      []string // after the "# " prompt
	interrupt bool     // ended by ^C, its output on stderr
	output    []string
}

// readQuickStart reads the example from the README: the sentence that
// says which pings arrive, then the indented block of "# command" lines,
// each followed by its output ("^C" where the reader presses Ctrl-C).
func readQuickStart(t *testing.T) quickStart {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Quick start")
	section, _, _ = strings.Cut(section, "\n## ")
	m := regexp.MustCompile(`pings of ([0-9, and]+) bytes of L3`).FindStringSubmatchIndex(section)
	if !ok || m == nil {
		t.Fatal("README: no quick start section with an example saying which pings arrive")
	}
	var q quickStart
	for _, f := range strings.FieldsFunc(section[m[2]:m[3]], func(r rune) bool { return r == ',' || r == ' ' }) {
		if n, err := strconv.Atoi(f); err == nil {
			q.pings = append(q.pings, n)
		}
	}
	for _, line := range strings.Split(section[m[1]:], "\n") {
		indented, ok := strings.CutPrefix(line, "    ")
		switch {
		case !ok && len(q.steps) > 0 && line != "":
			return q // the block ended
		case !ok:
		case strings.HasPrefix(indented, "# "):
			q.steps = append(q.steps, quickStep{args: strings.Fields(indented[2:])})
		case len(q.steps) == 0:
		case indented == "^C":
			q.steps[len(q.steps)-1].interrupt = true
		default:
			q.steps[len(q.steps)-1].output = append(q.steps[len(q.steps)-1].output, indented)
		}
	}
	return q
}

// What differs from run to run, put in place of itself before lines are
// compared: the frames ringcap saw (ARP and the pings below the MTU
// too), the file's size, tshark's timestamps and ping's identifiers, and
// the hook of received frames, which depends on the interface's driver
// (the README's eth0 takes native XDP; the test's is a veth, at tcx
// ingress). Everything else in the README's example must be what ringcap
// and tshark print.
var quickStartVarying = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\(inbound, [^)]*?; outbound, tcx egress\)`), "(inbound, HOOK; outbound, tcx egress)"},
	{regexp.MustCompile(`\b[0-9]+ seen\b`), "N seen"},
	{regexp.MustCompile(`\([0-9.]+ [KMG]?i?B\)`), "(SIZE)"},
	{regexp.MustCompile(`^([0-9]+) [0-9]+\.[0-9]{9}`), "$1 TIME"},
	{regexp.MustCompile(`id=0x[0-9a-f]{4}`), "id=ID"},
}

func normalizeQuickStart(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		l = strings.Join(strings.Fields(l), " ") // tshark's column widths
		for _, v := range quickStartVarying {
			l = v.re.ReplaceAllString(l, v.with)
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

// The quick start's example runs as it reads: ringcap record on an
// interface named eth0, the pings it names arriving from another
// namespace, Ctrl-C, and tshark reading the file; each prints what the
// README shows.
func TestQuickStart(t *testing.T) {
	bpftest.RequireTool(t, "tshark")
	q := readQuickStart(t)
	if len(q.pings) == 0 || len(q.steps) != 2 || !q.steps[0].interrupt || q.steps[0].args[0] != "./ringcap" {
		t.Fatalf("README's quick start example is not pings, then ./ringcap record until ^C, then one more command: %+v", q)
	}
	p := newVethPairMTU(t, 9000)
	for _, args := range [][]string{{"link", "set", rxIf, "down"}, {"link", "set", rxIf, "name", "eth0"}, {"link", "set", "eth0", "up"}} {
		runIP(t, append([]string{"-n", p.Rx}, args...)...)
	}
	dir := t.TempDir()

	record := q.steps[0]
	cmd := exec.Command("ip", append([]string{"netns", "exec", p.Rx, binary}, record.args[1:]...)...)
	cmd.Dir = dir
	r := startCmd(t, cmd)
	// The interface comes up after the rename: the first ping may wait
	// for the link.
	for _, l3 := range q.pings {
		p.ping(t, l3-28) // ICMP and IPv4 headers
	}
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	got := normalizeQuickStart(strings.Split(strings.TrimRight(r.errors(), "\n"), "\n"))
	if want := normalizeQuickStart(record.output); got != want {
		t.Errorf("%s printed (normalized)\n%s\nthe README shows\n%s", strings.Join(record.args, " "), got, want)
	}

	read := q.steps[1]
	bpftest.RequireTool(t, read.args[0])
	readCmd := exec.Command(read.args[0], read.args[1:]...)
	readCmd.Dir = dir
	out, err := readCmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(read.args, " "), err)
	}
	got = normalizeQuickStart(strings.Split(strings.TrimRight(string(out), "\n"), "\n"))
	if want := normalizeQuickStart(read.output); got != want {
		t.Errorf("%s printed (normalized)\n%s\nthe README shows\n%s", strings.Join(read.args, " "), got, want)
	}
}
