package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/bpf/bpftest"
)

// binary is ringcap built once for all tests here: the tests run it as a
// user would, and read its exit code and output.
var binary string

// testVersion is the version the tests build ringcap with.
const testVersion = "0.0.0-test"

func TestMain(m *testing.M) {
	if os.Getenv(noLinksEnv) == "1" {
		runWithoutBPFLinks()
	}
	dir, err := os.MkdirTemp("", "ringcap-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// World-readable, so that the test for missing privileges can run it
	// as nobody.
	os.Chmod(dir, 0o755)
	binary = filepath.Join(dir, "ringcap")
	// A version of its own, so that a golden file that depended on the
	// version (it must not) fails here rather than at the next release.
	// -buildvcs=auto stamps the commit, whatever GOFLAGS says.
	build := exec.Command("go", "build", "-buildvcs=auto", "-ldflags", "-X main.version="+testVersion, "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ringcap:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code   int
	stdout string
	stderr string
}

// runTimeout bounds a run of ringcap that should end by itself: one that
// captures instead, waiting for a signal, fails the test instead of
// hanging it.
const runTimeout = time.Minute

func runRingcap(t *testing.T, cred *syscall.Credential, args ...string) result {
	t.Helper()
	return runAs(t, cred, binary, args...)
}

// runCommand runs name with args, as runRingcap runs ringcap.
func runCommand(t *testing.T, name string, args ...string) result {
	t.Helper()
	return runAs(t, nil, name, args...)
}

func runAs(t *testing.T, cred *syscall.Credential, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Should the test binary die (a timeout's panic), a ringcap still
	// capturing dies with it instead of holding an interface.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("ringcap %s did not end within %v:\n%s", strings.Join(args, " "), runTimeout, stderr.String())
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run ringcap: %v", err)
	}
	return result{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "exists.pcapng")
	if err := os.WriteFile(existing, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "new.pcapng")
	// What -w must neither write into nor replace, --force or not.
	adir, link, nodir := filepath.Join(dir, "adir"), filepath.Join(dir, "link.pcapng"), filepath.Join(dir, "nodir")
	if err := os.Mkdir(adir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(existing, link); err != nil {
		t.Fatal(err)
	}
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	// A port taken, for --metrics.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().String()
	// Ring sizes follow the page size, which is not 4KiB everywhere.
	page := os.Getpagesize()
	size := func(n int) string { return bpf.FormatSize(uint64(n)) }

	tests := []struct {
		name string
		cred *syscall.Credential
		args []string
		code int
		want string
	}{
		{"unknown interface", nil, []string{"record", "-i", "nosuch0", "-w", out},
			exitRuntime, `unknown interface "nosuch0": ` + "`ip link` lists the interfaces"},
		{"ring size not a power of two", nil, []string{"record", "-i", "lo", "-w", out, "--ring-size", strconv.Itoa(page + 8), "--rings", "1"},
			exitUsage, "ring size " + size(page+8) + " is not a power of two: use " + size(page) + " or " + size(2*page)},
		{"ring size not a power of two, in MiB", nil, []string{"record", "-i", "lo", "-w", out, "--ring-size", "12MiB", "--rings", "1"},
			exitUsage, "ring size 12MiB is not a power of two: use 8MiB or 16MiB"},
		{"ring size below a page", nil, []string{"record", "-i", "lo", "-w", out, "--ring-size", size(page / 2), "--rings", "1"},
			exitUsage, "ring size " + size(page/2) + " is smaller than a page: give a power of two from the page size, " + size(page) + ", to 2GiB"},
		{"ring size 0", nil, []string{"record", "-i", "lo", "-w", out, "--ring-size", "0", "--rings", "1"},
			exitUsage, "ring size 0 bytes is smaller than a page: give a power of two from the page size, " + size(page) + ", to 2GiB"},
		{"ring size past 2GiB", nil, []string{"record", "-i", "lo", "-w", out, "--ring-size", "4GiB", "--rings", "1"},
			exitUsage, "ring size 4GiB is larger than the kernel allows: give a power of two from the page size, " + size(page) + ", to 2GiB"},
		{"ring size unreadable", nil, []string{"record", "-i", "lo", "-w", out, "--ring-size", "8XB"},
			exitUsage, `invalid size "8XB": give bytes, or a number with KiB, MiB or GiB, e.g. 8MiB`},
		{"wakeup size past the ring", nil, []string{"record", "-i", "lo", "-w", out, "--ring-size", "1MiB", "--rings", "1", "--wakeup-size", "2MiB"},
			exitUsage, "--wakeup-size 2MiB: give a size from 1 byte up to a ring's, 1MiB"},
		{"snaplen negative", nil, []string{"record", "-i", "lo", "-w", out, "-s", "-1"},
			exitUsage, "record: -s -1: give a number from 0 (whole frames) to 65557"},
		{"snaplen negative, long flag", nil, []string{"record", "-i", "lo", "-w", out, "--snaplen", "-1"},
			exitUsage, "record: --snaplen -1: give a number from 0 (whole frames) to 65557"},
		{"snaplen not a number, in replay", nil, []string{"replay", "../../testdata/protocols.pcap", "-w", out, "--snaplen", "all"},
			exitUsage, "replay: --snaplen all: give a number from 0 (whole frames) to 65557"},
		{"mtu negative", nil, []string{"record", "-i", "lo", "-w", out, "--mtu", "-5"},
			exitUsage, "record: --mtu -5: give a number from 0 to 65535"},
		{"mtu too large", nil, []string{"record", "-i", "lo", "-w", out, "--mtu", "70000"},
			exitUsage, "record: --mtu 70000: give a number from 0 to 65535"},
		{"count negative", nil, []string{"record", "-i", "lo", "-w", out, "--count", "-1"},
			exitUsage, "record: --count -1: give a number of frames, 1 or more; leave -c out to capture until Ctrl-C"},
		{"count 0", nil, []string{"record", "-i", "lo", "-w", out, "-c", "0"},
			exitUsage, "record: --count 0: give a number of frames, 1 or more; leave -c out to capture until Ctrl-C"},
		{"duration without a unit", nil, []string{"record", "-i", "lo", "-w", out, "--duration", "30"},
			exitUsage, "record: --duration 30: give a duration such as 30s or 10m"},
		{"duration 0", nil, []string{"record", "-i", "lo", "-w", out, "--duration", "0s"},
			exitUsage, "record: --duration 0s: give a duration such as 30s or 10m; leave --duration out to capture until Ctrl-C"},
		{"max files 0", nil, []string{"record", "-i", "lo", "-w", out, "-C", "1MiB", "-W", "0"},
			exitUsage, "record: --max-files 0: give a number of files, 1 or more"},
		{"max files negative, in replay", nil, []string{"replay", "../../testdata/protocols.pcap", "-w", out, "-C", "1MiB", "-W", "-3"},
			exitUsage, "replay: --max-files -3: give a number of files, 1 or more"},
		{"rotate packets 0", nil, []string{"record", "-i", "lo", "-w", out, "--rotate-packets", "0"},
			exitUsage, "record: --rotate-packets 0: give a number of frames, 1 or more"},
		{"rotate every millisecond", nil, []string{"record", "-i", "lo", "-w", out, "-G", "1ms"},
			exitUsage, "record: --rotate-every 1ms: give a duration of 1s or more, such as 10m (0 rotates by size or packets only)"},
		{"interface twice", nil, []string{"record", "-i", "lo", "-i", "lo", "-w", out},
			exitUsage, "record: -i lo is given twice: give each interface once"},
		{"interface empty", nil, []string{"record", "-i", "", "-w", out},
			exitUsage, "record: -i is empty: give an interface name (`ip link` lists them), or any"},
		{"filter too large", nil, append([]string{"record", "-i", "lo", "-w", out}, hostTerms(10000)...),
			exitUsage, "29999 words, more than the 600 ringcap gives libpcap, whose optimiser needs memory that grows with the square of the size: use fewer terms"},
		{"output file exists", nil, []string{"record", "-i", "lo", "-w", existing},
			exitRuntime, "output file " + existing + " exists: use --force to overwrite it"},
		{"output is a directory", nil, []string{"record", "-i", "lo", "-w", adir},
			exitUsage, "-w " + adir + " is a directory, not a regular file: give a file name in it, such as " + adir + "/capture.pcapng"},
		{"output in a directory that does not exist", nil, []string{"record", "-i", "lo", "-w", nodir + "/x"},
			exitUsage, "-w " + nodir + "/x: there is no directory " + nodir + ": create it first (mkdir -p " + nodir + "), or give a file in one that exists"},
		{"output is a link, with --force", nil, []string{"record", "-i", "lo", "-w", link, "--force"},
			exitUsage, "-w " + link + " is a symbolic link, not a regular file: give a new file name (ringcap does not write through links), or -w - for standard output"},
		{"replay, output is a directory", nil, []string{"replay", "../../testdata/protocols.pcap", "-w", adir, "--force"},
			exitUsage, "-w " + adir + " is a directory, not a regular file: give a file name in it, such as " + adir + "/capture.pcapng"},
		{"not root", nobody, []string{"record", "-i", "lo", "-w", out},
			exitRuntime, "ringcap needs root, or the capabilities CAP_BPF and CAP_NET_ADMIN: run it with sudo (missing CAP_BPF and CAP_NET_ADMIN)"},
		{"no interface", nil, []string{"record", "-w", out},
			exitUsage, "no interface: give one with -i IFACE"},
		{"no output", nil, []string{"record", "-i", "lo"},
			exitUsage, "no output file: give one with -w FILE"},
		{"unknown mode", nil, []string{"record", "-i", "lo", "-w", out, "--mode", "turbo"},
			exitUsage, `unknown mode "turbo": use auto, native or generic`},
		{"unknown flag", nil, []string{"record", "-i", "lo", "-w", out, "--bogus"},
			exitUsage, "flag provided but not defined: -bogus"},
		{"unknown command", nil, []string{"play"},
			exitUsage, `unknown command "play"`},
		{"rotation to standard output", nil, []string{"record", "-i", "lo", "-w", "-", "-C", "1MiB"},
			exitUsage, "rotation needs a file name, not standard output"},
		{"max files without rotation", nil, []string{"record", "-i", "lo", "-w", out, "-W", "5"},
			exitUsage, "--max-files needs a rotation: --rotate-size, --rotate-every or --rotate-packets"},
		{"align without rotate-every", nil, []string{"record", "-i", "lo", "-w", out, "--align", "-C", "1MiB"},
			exitUsage, "--align needs --rotate-every"},
		{"rotate size unreadable", nil, []string{"record", "-i", "lo", "-w", out, "-C", "lots"},
			exitUsage, `--rotate-size "lots": give a size such as 100MiB`},
		{"file mode without write", nil, []string{"record", "-i", "lo", "-w", out, "--file-mode", "0444"},
			exitUsage, `--file-mode "0444": give octal permissions that let ringcap read and write, e.g. 0600 or 0640`},
		{"post-rotate to standard output", nil, []string{"record", "-i", "lo", "-w", "-", "-z", "gzip"},
			exitUsage, "--post-rotate needs files, not standard output"},
		{"bad expression", nil, []string{"record", "-i", "lo", "-w", out, "tcp", "port"},
			exitUsage, `filter expression "tcp port": can't parse filter expression: syntax error`},
		{"bad expression in --filter", nil, []string{"record", "-i", "lo", "-w", out, "-f", "host 999.1.1.1"},
			exitUsage, `filter expression "host 999.1.1.1": `},
		{"netns that does not exist", nil, []string{"record", "--netns", "nosuch", "-i", "lo", "-w", out},
			exitUsage, "--netns nosuch: no network namespace at /run/netns/nosuch: `ip netns list` names the namespaces, or give a path such as /proc/PID/ns/net"},
		{"netns not a network namespace", nil, []string{"record", "--netns", "/proc/self/ns/mnt", "-i", "lo", "-w", out},
			exitUsage, "--netns /proc/self/ns/mnt: /proc/self/ns/mnt is not a network namespace: `ip netns list` names the namespaces"},
		{"netns not readable", nobody, []string{"interfaces", "--netns", "/proc/1/ns/net"},
			exitRuntime, "--netns /proc/1/ns/net: cannot open /proc/1/ns/net: permission denied: entering another network namespace needs root (CAP_SYS_ADMIN)"},
		{"netns empty", nil, []string{"interfaces", "--netns", ""},
			exitUsage, "interfaces: --netns is empty: give an ip netns name, or a path such as /proc/PID/ns/net"},
		{"upload over http", nil, []string{"record", "-i", "lo", "-w", out, "--upload", "http://127.0.0.1:7070/captures"},
			exitUsage, `record: --upload "http://127.0.0.1:7070/captures": give s3://BUCKET/PREFIX (the store's address, if not AWS, goes in AWS_ENDPOINT_URL)`},
		{"upload without a bucket", nil, []string{"record", "-i", "lo", "-w", out, "--upload", "s3://"},
			exitUsage, `record: --upload "s3://": no bucket: give s3://BUCKET/PREFIX`},
		{"upload from standard output", nil, []string{"record", "-i", "lo", "-w", "-", "--upload", "s3://captures"},
			exitUsage, "record: --upload needs files, not standard output"},
		{"upload-delete without upload", nil, []string{"record", "-i", "lo", "-w", out, "--upload-delete"},
			exitUsage, "record: --upload-delete and --upload-timeout need --upload s3://BUCKET/PREFIX"},
		{"negative upload timeout", nil, []string{"record", "-i", "lo", "-w", out, "--upload", "s3://captures", "--upload-timeout", "-1s"},
			exitUsage, "record: --upload-timeout -1s: give a duration of 0s or more, such as 20s"},
		{"upload empty", nil, []string{"record", "-i", "lo", "-w", out, "--upload", ""},
			exitUsage, "record: --upload is empty: give s3://BUCKET/PREFIX"},
		{"upload bucket with capitals and marks", nil, []string{"record", "-i", "lo", "-w", out, "--upload", "s3://Bad_Bucket!!/p"},
			exitUsage, `record: --upload "s3://Bad_Bucket!!/p": bucket "Bad_Bucket!!": 'B' cannot be in it: S3 bucket names have 3 to 63 lowercase letters, digits, dots and hyphens`},
		{"upload bucket too long", nil, []string{"record", "-i", "lo", "-w", out, "--upload", "s3://" + strings.Repeat("b", 300) + "/p"},
			exitUsage, "bucket name of 300 characters: S3 bucket names have 3 to 63 lowercase letters"},
		{"upload bucket an address", nil, []string{"record", "-i", "lo", "-w", out, "--upload", "s3://198.18.0.1/p"},
			exitUsage, `bucket "198.18.0.1" is an IP address: give the bucket's name (the store's address goes in AWS_ENDPOINT_URL)`},
		{"upload prefix climbing", nil, []string{"record", "-i", "lo", "-w", out, "--upload", "s3://bucket/../../etc"},
			exitUsage, `record: --upload "s3://bucket/../../etc": prefix "../../etc" has a ".." segment: give the path the objects go to, without . or .. segments`},
		{"upload prefix with an empty segment", nil, []string{"record", "-i", "lo", "-w", out, "--upload", "s3://bucket/a//b"},
			exitUsage, `prefix "a//b" has an empty segment (//): give each / once`},
		{"any with names", nil, []string{"record", "-i", "any", "-i", "lo", "-w", out},
			exitUsage, "record: -i any is every interface already: give it alone, or name the interfaces"},
		{"any after a name", nil, []string{"record", "-i", "x", "-i", "any", "-w", out},
			exitUsage, "record: -i any is every interface already: give it alone, or name the interfaces"},
		{"unknown direction", nil, []string{"record", "-i", "lo", "-w", out, "-Q", "sideways"},
			exitUsage, `-Q: unknown direction "sideways": use in, out or inout`},
		{"unknown hook", nil, []string{"record", "-i", "lo", "-w", out, "--hook", "socket"},
			exitUsage, `--hook: unknown hook "socket": use auto, xdp or tc`},
		{"hook without inbound", nil, []string{"record", "-i", "lo", "-w", out, "-Q", "out", "--hook", "tc"},
			exitUsage, "--hook chooses where inbound frames are captured, and -Q out captures none: leave one out"},
		{"ifname", nil, []string{"record", "-i", "lo", "-w", out, "ifname", "eth0"},
			exitUsage, `"ifname" cannot be used here: it names an interface in OpenBSD pf logs; choose interfaces with -i`},
		{"expression twice", nil, []string{"record", "-i", "lo", "-w", out, "-f", "udp", "tcp"},
			exitUsage, `a filter expression both in --filter and after the options ("tcp"): give one`},
		{"metrics address unreadable", nil, []string{"record", "-i", "lo", "-w", out, "--metrics", "9464"},
			exitUsage, `record: --metrics "9464": give HOST:PORT or :PORT, e.g. 127.0.0.1:9464`},
		{"metrics garbage", nil, []string{"record", "-i", "lo", "-w", out, "--metrics", "garbage"},
			exitUsage, `record: --metrics "garbage": give HOST:PORT or :PORT, e.g. 127.0.0.1:9464`},
		{"metrics port out of range", nil, []string{"record", "-i", "lo", "-w", out, "--metrics", "127.0.0.1:99999"},
			exitUsage, `record: --metrics 127.0.0.1:99999: port "99999": give a number from 1 to 65535, or 0 for any free port`},
		{"metrics host unknown", nil, []string{"record", "-i", "lo", "-w", out, "--metrics", "nosuch.invalid:9464"},
			exitUsage, `--metrics nosuch.invalid:9464: no address found for "nosuch.invalid" (`},
		{"metrics empty", nil, []string{"record", "-i", "lo", "-w", out, "--metrics", ""},
			exitUsage, "record: --metrics is empty: give HOST:PORT or :PORT, e.g. 127.0.0.1:9464"},
		{"metrics port taken", nil, []string{"record", "-i", "lo", "-w", out, "--metrics", taken},
			exitRuntime, "--metrics " + taken + ": the port is taken: choose another"},
		{"replay, bad expression", nil, []string{"replay", "../../testdata/protocols.pcap", "-w", out, "udp", "and"},
			exitUsage, "syntax error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cred != nil {
				bpftest.RequirePrivileges(t) // to switch users
			}
			r := runRingcap(t, tt.cred, tt.args...)
			if r.code != tt.code {
				t.Errorf("exit code %d, want %d", r.code, tt.code)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "ringcap: ") || !strings.Contains(lines[0], tt.want) {
				t.Errorf("stderr = %q, want one line saying %q", r.stderr, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
		})
	}
	if b, err := os.ReadFile(existing); err != nil || string(b) != "keep me" {
		t.Errorf("the existing file was touched: %q, %v", b, err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused run left %s behind: %v", out, err)
	}
	if to, err := os.Readlink(link); err != nil || to != existing {
		t.Errorf("the link at -w is now %q, %v; want the link to %s", to, err, existing)
	}
	if entries, err := os.ReadDir(adir); err != nil || len(entries) != 0 {
		t.Errorf("the directory at -w holds %d entries, %v; want it empty", len(entries), err)
	}
	if _, err := os.Stat(nodir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused run made %s: %v", nodir, err)
	}
}

// hostTerms are the words of an expression of n host terms.
func hostTerms(n int) []string {
	var words []string
	for i := range n {
		if i > 0 {
			words = append(words, "or")
		}
		words = append(words, "host", fmt.Sprintf("198.18.%d.%d", i/250, i%250+1))
	}
	return words
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"4096", 4096, true},
		{"64KiB", 64 << 10, true},
		{"8MiB", 8 << 20, true},
		{"8M", 8 << 20, true},
		{"1GiB", 1 << 30, true},
		{"1gib", 1 << 30, true},
		{"2k", 2 << 10, true},
		{"8MB", 0, false},
		{"MiB", 0, false},
		{"", 0, false},
		{"-1", 0, false},
		{"99999999999GiB", 0, false},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// ringcap version and --version say the version, the Go version and the
// commit, as git names it.
func TestVersion(t *testing.T) {
	want := "ringcap " + testVersion + ", " + runtime.Version() + ", commit unknown (not built from a git checkout)"
	if head, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		want = "ringcap " + testVersion + ", " + runtime.Version() + ", commit " + strings.TrimSpace(string(head))
		if status, _ := exec.Command("git", "status", "--porcelain").Output(); len(status) > 0 {
			want += ", with changes not committed"
		}
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := runRingcap(t, nil, args...)
		if r.code != 0 || r.stdout != want+"\n" {
			t.Errorf("ringcap %s: exit %d, %q; want %q", args[0], r.code, r.stdout, want)
		}
	}
}

// The completion scripts: bash's completes commands and flags by asking
// ringcap; zsh's and fish's are scripts their shells take.
func TestCompletion(t *testing.T) {
	bpftest.RequireTool(t, "bash")
	script := runRingcap(t, nil, "completion", "bash")
	if script.code != 0 {
		t.Fatalf("completion bash: exit %d: %s", script.code, script.stderr)
	}
	for _, tt := range []struct {
		words []string // what is typed, the last word being completed
		want  string
	}{
		{[]string{"rec"}, "record"},
		{[]string{"record", "--rotate-p"}, "--rotate-packets"},
		{[]string{"replay", "--filt"}, "--filter"},
	} {
		words := append([]string{binary}, tt.words...)
		cmd := exec.Command("bash", "-c", script.stdout+`
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _ringcap; echo "${COMPREPLY[*]}"`, "bash")
		cmd.Args = append(cmd.Args, words...)
		out, err := cmd.CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != tt.want {
			t.Errorf("completing %q: %q (%v), want %q", tt.words, got, err, tt.want)
		}
	}
	for _, shell := range []struct{ name, check string }{{"zsh", "-n"}, {"fish", "--no-execute"}} {
		bpftest.RequireTool(t, shell.name)
		r := runRingcap(t, nil, "completion", shell.name)
		cmd := exec.Command(shell.name, shell.check)
		cmd.Stdin = strings.NewReader(r.stdout)
		if out, err := cmd.CombinedOutput(); r.code != 0 || err != nil || len(r.stdout) == 0 {
			t.Errorf("%s does not take ringcap's script (exit %d): %v\n%s", shell.name, r.code, err, out)
		}
	}
	if r := runRingcap(t, nil, "completion", "tcsh"); r.code != exitUsage || !strings.Contains(r.stderr, "give the shell: bash, zsh or fish") {
		t.Errorf("completion tcsh: exit %d, %q", r.code, r.stderr)
	}
}
