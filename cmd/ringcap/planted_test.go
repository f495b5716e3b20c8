package main

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// sharedDir makes a directory as /tmp is, sticky and world-writable, and
// lets root follow the links other users put in it, as a machine with
// fs.protected_symlinks=0 does (set back when t ends).
func sharedDir(t *testing.T) string {
	t.Helper()
	bpftest.RequirePrivileges(t)
	const sysctl = "/proc/sys/fs/protected_symlinks"
	was, err := os.ReadFile(sysctl)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sysctl, []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(sysctl, was, 0o644); err != nil {
			t.Errorf("set %s back to %s: %v", sysctl, was, err)
		}
	})
	return openDir(t, "ringcap-shared", 0o1777)
}

// openDir makes a directory that other users may enter, with mode, removed
// when t ends: not under t.TempDir(), which only root may enter.
func openDir(t *testing.T, prefix string, mode os.FileMode) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

// asNobody runs script with sh as the unprivileged user nobody.
func asNobody(t *testing.T, script string) {
	t.Helper()
	bpftest.RequireTool(t, "setpriv")
	out, err := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
}

// rootFiles makes n files of root's, mode 0644, for planted links to lead
// to, in a directory of root's.
func rootFiles(t *testing.T, n int) []string {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for i := range n {
		path := filepath.Join(dir, fmt.Sprintf("secret%d", i))
		if err := os.WriteFile(path, []byte(fmt.Sprintf("root's file %d\n", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, 0o644); err != nil { // whatever the umask
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	return paths
}

var takenLine = regexp.MustCompile(`^ringcap: (\S+) is taken \((a symbolic link|a file) ringcap did not create for this run\): skipped, the capture goes on under the next number$`)

// An unprivileged user plants links (and a file) at the names a rotating
// capture will use, for every second to come, in a sticky world-writable
// directory, leading to files of root's: ringcap record --force writes
// none of them, follows none, removes none, says each name it passes
// over, and the capture goes on under free names with every frame.
func TestPlantedNames(t *testing.T) {
	dir := sharedDir(t)
	p := newVethPair(t)
	targets := rootFiles(t, 3)
	var script strings.Builder
	planted := make(map[string]string) // name: a symbolic link, or a file
	now := time.Now()
	for sec := -1; sec <= 30; sec++ {
		stamp := now.Add(time.Duration(sec) * time.Second).Format("20060102150405")
		for _, seq := range []int{1, 2, 3, 5, 6} {
			name := filepath.Join(dir, fmt.Sprintf("cap_%05d_%s.pcapng", seq, stamp))
			if seq == 3 {
				fmt.Fprintf(&script, "echo nobody > %s\n", name)
				planted[name] = "a file"
				continue
			}
			fmt.Fprintf(&script, "ln -s %s %s\n", targets[seq%len(targets)], name)
			planted[name] = "a symbolic link"
		}
	}
	asNobody(t, script.String())
	before := make(map[string]bpftest.PathState)
	for _, path := range append(slices.Collect(maps.Keys(planted)), targets...) {
		before[path] = bpftest.StateOf(t, path)
	}

	const pings, perFile = 12, 2
	r := p.start(t, "-w", filepath.Join(dir, "cap.pcapng"), "-q", "--rotate-packets", strconv.Itoa(perFile), "--force")
	for range pings {
		p.ping(t, 1600) // oversize, as ringcap selects by default
	}
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}

	for path, st := range before {
		bpftest.Untouched(t, path, st)
	}
	// Each name passed over is one line, and a planted one.
	said := make(map[string]bool)
	for _, line := range strings.Split(r.errors(), "\n") {
		if !strings.Contains(line, " is taken ") {
			continue
		}
		m := takenLine.FindStringSubmatch(line)
		switch {
		case m == nil:
			t.Errorf("line %q is not as the test expects", line)
		case planted[m[1]] != m[2]:
			t.Errorf("%q: that is not what the test planted there (%q)", line, planted[m[1]])
		case said[m[1]]:
			t.Errorf("%s said twice", m[1])
		}
		if m != nil {
			said[m[1]] = true
		}
	}
	// The first file passes over numbers 1 to 3, the first rotation 5
	// and 6: every second has them planted.
	if len(said) != 5 {
		t.Errorf("%d names said to be taken, want 5:\n%s", len(said), r.errors())
	}
	// ringcap's own files: new regular files of root's, mode 0600,
	// numbered upwards, with every frame.
	paths, err := filepath.Glob(filepath.Join(dir, "cap_*.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	var own []string
	for _, path := range paths {
		if planted[path] == "" {
			own = append(own, path)
		}
	}
	slices.Sort(own)
	sum := parseSummary(t, r.errors())
	if len(own) != sum.files || len(own) < pings/perFile {
		t.Fatalf("ringcap's files: %q; the summary says %d, want at least %d:\n%s", own, sum.files, pings/perFile, r.errors())
	}
	frames, lastSeq := 0, 0
	for i, path := range own {
		st := bpftest.StateOf(t, path)
		if st.Mode != 0o600 || st.UID != 0 {
			t.Errorf("%s: mode %v, owner %d; want a regular file of root's, mode 0600", path, st.Mode, st.UID)
		}
		seq, _ := strconv.Atoi(strings.Split(filepath.Base(path), "_")[1])
		if seq <= lastSeq {
			t.Errorf("%s: numbered %d after %d", path, seq, lastSeq)
		}
		if want := map[int]int{0: 4, 1: 7}[i]; want != 0 && seq != want {
			t.Errorf("%s: file %d numbered %d, want %d", path, i+1, seq, want)
		}
		lastSeq = seq
		n, _ := pcapngtest.Count(t, path, false)
		frames += n
	}
	if frames != pings || sum.frames != pings {
		t.Errorf("%d frames in ringcap's files, the summary says %d; want %d", frames, sum.frames, pings)
	}
}

// What is at -w and is not a regular file (a link an unprivileged user
// planted, a device node, a directory) is refused with --force, in one
// line that names the fix, exit 2; nothing is written, followed, removed
// or chmodded.
func TestForceRefusesNotRegular(t *testing.T) {
	dir := sharedDir(t)
	target := rootFiles(t, 1)[0]
	link, device, adir := filepath.Join(dir, "link.pcapng"), filepath.Join(t.TempDir(), "full"), filepath.Join(dir, "adir")
	asNobody(t, fmt.Sprintf("ln -s %s %s && mkdir %s", target, link, adir))
	// /dev/full's numbers, in a directory of the test's: the machine's
	// /dev is never touched.
	if err := unix.Mknod(device, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 7))); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want string
	}{
		{link, "-w " + link + " is a symbolic link, not a regular file: give a new file name (ringcap does not write through links), or -w - for standard output"},
		{device, "-w " + device + " is a device, not a regular file: give a new file name, or -w - for standard output"},
		{adir, "-w " + adir + " is a directory, not a regular file: give a file name in it, such as " + adir + "/capture.pcapng"},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			before := map[string]bpftest.PathState{tt.path: bpftest.StateOf(t, tt.path), target: bpftest.StateOf(t, target)}
			r := runRingcap(t, nil, "record", "-i", "lo", "-w", tt.path, "--force")
			if r.code != exitUsage {
				t.Errorf("exit code %d, want %d", r.code, exitUsage)
			}
			if want := "ringcap: record: " + tt.want + "\n"; r.stderr != want {
				t.Errorf("stderr = %q, want %q", r.stderr, want)
			}
			for path, st := range before {
				bpftest.Untouched(t, path, st)
			}
		})
	}
	if entries, err := os.ReadDir(adir); err != nil || len(entries) != 0 {
		t.Errorf("the directory at -w holds %d entries, %v; want it empty", len(entries), err)
	}
}
