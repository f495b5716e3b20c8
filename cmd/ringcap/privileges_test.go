package main

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// creds are a task's ids and capability sets, as /proc/PID/status shows
// them: Uid, Gid, Groups, CapInh, CapPrm, CapEff, CapBnd, CapAmb.
type creds map[string]string

var credFields = []string{"Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}

// readCreds reads a status file of /proc.
func readCreds(t *testing.T, path string) creds {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c := creds{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		if slices.Contains(credFields, k) {
			c[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return c
}

func (c creds) String() string {
	var b strings.Builder
	for _, k := range credFields {
		fmt.Fprintf(&b, "%s: %s; ", k, c[k])
	}
	return b.String()
}

// capMask is the sets of /proc/PID/status holding caps.
func capMask(caps ...int) string {
	var m uint64
	for _, c := range caps {
		m |= 1 << c
	}
	return fmt.Sprintf("%016x", m)
}

// credsOf is what a process of account u holds with caps permitted and
// effective, and nothing inheritable, bounding or ambient.
func credsOf(t *testing.T, u *user.User, caps ...int) creds {
	t.Helper()
	ids, err := u.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	groups := make([]int, len(ids))
	for i, id := range ids {
		if groups[i], err = strconv.Atoi(id); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(groups)
	none := capMask()
	return creds{
		"Uid":    strings.Repeat(u.Uid+" ", 3) + u.Uid,
		"Gid":    strings.Repeat(u.Gid+" ", 3) + u.Gid,
		"Groups": strings.Trim(fmt.Sprint(groups), "[]"),
		"CapInh": none, "CapPrm": capMask(caps...), "CapEff": capMask(caps...), "CapBnd": none, "CapAmb": none,
	}
}

// checkThreads checks every thread of ringcap's process pid: a Go
// program's threads each have credentials of their own.
func checkThreads(t *testing.T, pid int, want creds) {
	t.Helper()
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || exe != binary {
		t.Fatalf("process %d runs %q (%v), not ringcap", pid, exe, err)
	}
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) < 2 {
		t.Fatalf("ringcap's threads: %q (%v)", tasks, err)
	}
	for _, task := range tasks {
		if got := readCreds(t, task); got.String() != want.String() {
			t.Errorf("%s:\n%v\nwant\n%v", task, got, want)
		}
	}
}

// nobodysDir is a new directory that nobody owns, and only nobody (and
// root) may write in.
func nobodysDir(t *testing.T, nobody *user.User) string {
	t.Helper()
	// t.TempDir's parent is closed to nobody.
	dir, err := os.MkdirTemp("", "ringcap-z")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkOwner checks that each of paths is owned by u.
func checkOwner(t *testing.T, u *user.User, paths ...string) {
	t.Helper()
	for _, path := range paths {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if strconv.Itoa(int(st.Uid)) != u.Uid || strconv.Itoa(int(st.Gid)) != u.Gid {
			t.Errorf("%s is owned by %d:%d, want %s's %s:%s", path, st.Uid, st.Gid, u.Username, u.Uid, u.Gid)
		}
	}
}

// postRotateProbe is a -z command that leaves, beside each finished
// file, its shell's /proc status (the process ringcap started) and
// environment.
const postRotateProbe = `probe() { cat /proc/$$/status >"$1.status"; env >"$1.env"; }; probe`

// -Z nobody: once attached, every thread of ringcap runs as nobody, with
// nobody's groups, and no capability at all, the bounding and ambient
// sets empty; with -i any only CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON,
// with which it still attaches to an interface made after it started.
// The files are nobody's, in a directory only nobody may write in; the -z
// commands run as nobody with no capability, and keep the AWS variables
// ringcap does not use.
func TestRelinquishPrivileges(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	for _, tt := range []struct {
		name         string
		anyInterface bool
		caps         []int
	}{
		{"one interface", false, nil},
		{"any", true, []int{unix.CAP_BPF, unix.CAP_NET_ADMIN, unix.CAP_PERFMON}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newVethPair(t)
			dir := nobodysDir(t, nobody)
			path := filepath.Join(dir, "z.pcapng")
			t.Setenv("AWS_PROFILE", "the-post-rotate-commands")
			iface := rxIf
			if tt.anyInterface {
				iface = "any"
			}
			r := p.startRecord(t, "-i", iface, "-Z", "nobody", "-w", path, "-z", postRotateProbe, "icmp")
			checkThreads(t, r.cmd.Process.Pid, credsOf(t, nobody, tt.caps...))
			p.ping(t, 2000)
			want := [][]string{{rxIf, "2042"}}
			if tt.anyInterface {
				const newRx = "rc-z-rx"
				p.addLinkWhile(t, r, "rc-z-tx", newRx)
				p.pingAddr(t, "198.18.0.10", 1800)
				want = append(want, []string{newRx, "1842"})
			}
			if code := r.stop(t, os.Interrupt); code != 0 {
				t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
			}
			checkOwner(t, nobody, path, path+".status")
			if rows := pcapngtest.Fields(t, path, "frame.interface_name", "frame.len"); fmt.Sprint(rows) != fmt.Sprint(want) {
				t.Errorf("frames (interface, length) = %v, want %v", rows, want)
			}
			if got, want := readCreds(t, path+".status"), credsOf(t, nobody); got.String() != want.String() {
				t.Errorf("the -z command ran with\n%v\nwant\n%v", got, want)
			}
			if env := readEnv(t, path+".env"); !slices.Contains(env, "AWS_PROFILE=the-post-rotate-commands") {
				t.Errorf("the -z command's environment lacks AWS_PROFILE, which ringcap does not use without --upload:\n%s", strings.Join(env, "\n"))
			}
		})
	}
}

// readEnv reads an environment env(1) printed.
func readEnv(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// With --upload and -Z nobody, files are uploaded as nobody with
// credentials from a file only root may read (ringcap reads them before
// it becomes nobody), and the -z commands get none of the AWS variables:
// the credentials are ringcap's.
func TestRelinquishUpload(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	p := newVethPair(t)
	srv := p.newStore(t)
	// t.TempDir's parent is closed to nobody.
	credentials := filepath.Join(t.TempDir(), "credentials")
	profile := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", srv.Access, srv.Secret)
	if err := os.WriteFile(credentials, []byte(profile), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", credentials)
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		t.Setenv(v, "") // restored at the end
		os.Unsetenv(v)
	}
	dir := nobodysDir(t, nobody)
	r := p.start(t, append([]string{"-Z", "nobody", "-w", filepath.Join(dir, "rot.pcapng"), "-q", "--rotate-packets", "2", "-z", postRotateProbe}, uploadArgs...)...)
	for range 3 {
		p.ping(t, 2000)
	}
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	files := rotatedFiles(t, dir)
	if len(files) != 2 {
		t.Fatalf("files %q, want 2", files)
	}
	checkOwner(t, nobody, files...)
	checkStoreHolds(t, srv, files)
	for _, f := range files {
		for _, kv := range readEnv(t, f+".env") {
			if strings.HasPrefix(kv, "AWS_") {
				t.Errorf("the -z command on %s got %s", f, kv)
			}
		}
	}
}

// With --upload, a -w directory closed to -Z's user stops ringcap with the
// one line that says so, and does not hang: the uploads, started before
// ringcap became the user, end on the way out, and say nothing, as they
// were given no file.
func TestRelinquishUploadDirClosed(t *testing.T) {
	if _, err := user.Lookup("nobody"); err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	p := newVethPair(t)
	p.newStore(t) // the store answers: no line says it does not
	closed := t.TempDir()
	path := filepath.Join(closed, "z.pcapng")
	res := runCommand(t, "ip", append([]string{"netns", "exec", p.Rx, binary, "record", "-i", rxIf, "-Z", "nobody", "-w", path}, uploadArgs...)...)
	want := fmt.Sprintf("ringcap: record: -Z nobody: nobody may not create files in %s: give -w a directory nobody may write in, or let it (chown nobody %[1]s)\n", closed)
	if res.code != exitUsage || res.stderr != want {
		t.Errorf("exit %d, stderr\n%s\nwant exit %d, stderr\n%s", res.code, res.stderr, exitUsage, want)
	}
	p.noXDPLeft(t)
}

// -Z refused: a user the user database does not have (a uid too, as
// tcpdump's -Z takes names only), before anything is attached; a -w
// directory the user may not write in, before any file is made, with the
// program taken off again; a user ringcap may not become. One line each.
func TestRelinquishRefused(t *testing.T) {
	bpftest.RequireTool(t, "setpriv")
	p := newVethPair(t)
	// Root's, closed to others.
	closed := t.TempDir()
	asNobody := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all,+bpf,+net_admin", "--ambient-caps=-all,+bpf,+net_admin"}
	for _, tt := range []struct {
		name    string
		wrapper []string
		user    string
		dir     string
		code    int
		want    string
	}{
		{"unknown user", nil, "ringcap-no-such-user", closed, exitUsage,
			"ringcap: record: -Z ringcap-no-such-user: no such user: name one from the user database (getent passwd), as tcpdump's -Z takes it"},
		{"uid", nil, "65534", closed, exitUsage,
			"ringcap: record: -Z 65534: no user is named 65534: give a user's name, not a uid, as tcpdump's -Z takes it"},
		{"directory closed to the user", nil, "nobody", closed, exitUsage,
			fmt.Sprintf("ringcap: record: -Z nobody: nobody may not create files in %s: give -w a directory nobody may write in, or let it (chown nobody %[1]s)", closed)},
		{"not permitted", asNobody, "daemon", os.TempDir(), exitRuntime,
			"ringcap: -Z daemon: ringcap runs as uid 65534 and may not become daemon (uid 1) without CAP_SETUID and CAP_SETGID: run it as root, or leave -Z out"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(tt.dir, "z.pcapng")
			args := slices.Concat([]string{"netns", "exec", p.Rx}, tt.wrapper, []string{binary, "record", "-i", rxIf, "-Z", tt.user, "-w", path})
			r := runCommand(t, "ip", args...)
			if r.code != tt.code || r.stderr != tt.want+"\n" {
				t.Errorf("exit %d, stderr\n%s\nwant exit %d, stderr\n%s", r.code, r.stderr, tt.code, tt.want)
			}
			if _, err := os.Lstat(path); err == nil {
				t.Errorf("%s was created", path)
			}
			p.noXDPLeft(t)
		})
	}
}
