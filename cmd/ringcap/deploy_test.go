package main

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"kernel.org/pub/linux/libs/security/libcap/cap"

	"github.com/ringcap/ringcap/bpf/bpftest"
)

// The systemd unit is one systemd accepts, sandboxed: systemd-analyze
// verifies it and rates its exposure. Its capabilities are the ones
// TestCapabilitiesSuffice runs ringcap with.
func TestSystemdUnit(t *testing.T) {
	bpftest.RequireTool(t, "systemd-analyze")
	unit, err := os.ReadFile("../../deploy/ringcap@.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ExecStart=/usr/local/bin/ringcap record -i %i ",
		"AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON\n",
		"CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON\n",
		"KillSignal=SIGINT\n",
		"Restart=on-failure\n",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	// verify checks that ExecStart's program exists: point it at the
	// ringcap the tests built, as installing it would.
	path := filepath.Join(t.TempDir(), "ringcap@.service")
	local := strings.ReplaceAll(string(unit), "/usr/local/bin/ringcap", binary)
	if err := os.WriteFile(path, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("systemd-analyze", "verify", "--man=no", path).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Exposure, from 0 (locked down) to 100: this unit rates 23, "OK".
	if out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--threshold=30", path).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze security rates the unit's exposure above 3.0: %v\n%s", err, out)
	}
}

// make install puts every file where its user looks: installed under a
// prefix, man finds the page from PATH alone and systemd-analyze verify
// passes with its check of the man page on; installed for a package
// (DESTDIR), the tree holds exactly these files, the unit runs the
// binary from PREFIX and the extcap script is in Wireshark's folder.
func TestMakeInstall(t *testing.T) {
	for _, tool := range []string{"make", "man", "systemd-analyze"} {
		bpftest.RequireTool(t, tool)
	}
	installed := []string{
		"etc/ringcap/example.conf",
		"usr/bin/ringcap",
		"usr/lib/systemd/system/ringcap@.service",
		"usr/share/bash-completion/completions/ringcap",
		"usr/share/fish/vendor_completions.d/ringcap.fish",
		"usr/share/man/man1/ringcap.1",
		"usr/share/zsh/site-functions/_ringcap",
		strings.TrimPrefix(globalExtcapDir(t), "/") + "/ringcap",
	}
	slices.Sort(installed)
	dest := t.TempDir()
	makeInstall(t, "PREFIX=/usr", "DESTDIR="+dest)
	var got []string
	filepath.WalkDir(dest, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dest, path)
			got = append(got, rel)
		}
		return err
	})
	if !slices.Equal(got, installed) {
		t.Errorf("make install DESTDIR=... PREFIX=/usr installed\n%q\nwant\n%q", got, installed)
	}
	unit, err := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/ringcap@.service"))
	if err != nil || !strings.Contains(string(unit), "\nExecStart=/usr/bin/ringcap record ") {
		t.Errorf("the installed unit does not run /usr/bin/ringcap (%v)", err)
	}

	root := t.TempDir()
	prefix := filepath.Join(root, "opt/ringcap")
	makeInstall(t, "PREFIX="+prefix, "SYSCONFDIR="+filepath.Join(root, "etc"), "EXTCAPDIR="+filepath.Join(root, "extcap"))
	env := append(os.Environ(), "PATH="+filepath.Join(prefix, "bin")+":"+os.Getenv("PATH"), "MANPATH=")
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if got, want := strings.TrimSpace(run("man", "-w", "ringcap")), filepath.Join(prefix, "share/man/man1/ringcap.1"); got != want {
		t.Errorf("man -w ringcap = %q, want %q", got, want)
	}
	if page := run("man", "-P", "cat", "ringcap"); !strings.Contains(page, "ringcap record") {
		t.Errorf("man ringcap does not show the page:\n%s", page)
	}
	if out := run("systemd-analyze", "verify", filepath.Join(prefix, "lib/systemd/system/ringcap@.service")); out != "" {
		t.Errorf("systemd-analyze verify: %s", out)
	}
	for shell, path := range map[string]string{"bash": "share/bash-completion/completions/ringcap",
		"zsh": "share/zsh/site-functions/_ringcap", "fish": "share/fish/vendor_completions.d/ringcap.fish"} {
		file, err := os.ReadFile(filepath.Join(prefix, path))
		if want := run(filepath.Join(prefix, "bin/ringcap"), "completion", shell); err != nil || string(file) != want || want == "" {
			t.Errorf("%s: not ringcap completion %s (%v)", path, shell, err)
		}
	}
}

func makeInstall(t *testing.T, vars ...string) {
	t.Helper()
	out, err := exec.Command("make", append([]string{"-C", "../..", "--no-print-directory", "install"}, vars...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("make install %s: %v\n%s", strings.Join(vars, " "), err, out)
	}
}

// unitSetting returns the value of the unit's setting key, which it must
// have once.
func unitSetting(t *testing.T, unit, key string) string {
	t.Helper()
	var values []string
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			values = append(values, v)
		}
	}
	if len(values) != 1 {
		t.Fatalf("the unit sets %s %d times, want once", key, len(values))
	}
	return values[0]
}

// setprivCaps turns systemd's capability list (CAP_BPF CAP_NET_ADMIN)
// into setpriv's (-all,+bpf,+net_admin).
func setprivCaps(list string) string {
	caps := "-all"
	for _, c := range strings.Fields(list) {
		caps += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	return caps
}

// The unit's ringcap, started as systemd starts it (an unprivileged user
// with the unit's ambient capabilities and bounding set, and no new
// privileges; the user nobody standing in for the dynamic one) with the
// example options and a -z command: once attached, it holds no
// capability, none ambient, and its -z commands none either. The bounding
// set stays the unit's: dropping from it takes CAP_SETPCAP, which the
// unit does not give, and with NoNewPrivileges nothing gains from it.
func TestUnitCredentials(t *testing.T) {
	bpftest.RequireTool(t, "setpriv")
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	b, err := os.ReadFile("../../deploy/ringcap@.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	if nnp := unitSetting(t, unit, "NoNewPrivileges"); nnp != "yes" {
		t.Fatalf("NoNewPrivileges=%s", nnp)
	}
	ambient := setprivCaps(unitSetting(t, unit, "AmbientCapabilities"))
	wrapper := []string{"setpriv", "--reuid=" + nobody.Uid, "--regid=" + nobody.Gid, "--clear-groups", "--no-new-privs",
		"--inh-caps=" + ambient, "--ambient-caps=" + ambient, "--bounding-set=" + setprivCaps(unitSetting(t, unit, "CapabilityBoundingSet"))}
	conf, err := os.ReadFile("../../deploy/ringcap.conf")
	if err != nil {
		t.Fatal(err)
	}
	options := unitSetting(t, string(conf), "RINGCAP_OPTIONS")

	p := newVethPair(t)
	state := nobodysDir(t, nobody)
	cmdline := strings.NewReplacer("%i", rxIf, "${STATE_DIRECTORY}", state, "$RINGCAP_OPTIONS", options).Replace(unitSetting(t, unit, "ExecStart"))
	args := strings.Fields(cmdline)
	if args[0] != "/usr/local/bin/ringcap" {
		t.Fatalf("ExecStart runs %s", args[0])
	}
	r := p.startWrapped(t, wrapper, append(args[1:], "-z", postRotateProbe)...)
	var bounding []int
	for _, name := range strings.Fields(unitSetting(t, unit, "CapabilityBoundingSet")) {
		v, err := cap.FromName(strings.ToLower(name))
		if err != nil {
			t.Fatal(err)
		}
		bounding = append(bounding, int(v))
	}
	want := credsOf(t, nobody)
	want["Groups"], want["CapBnd"] = "", capMask(bounding...)
	checkThreads(t, r.cmd.Process.Pid, want)
	p.ping(t, 2000)
	if code := r.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	files, err := filepath.Glob(filepath.Join(state, rxIf+"_*.pcapng"))
	if err != nil || len(files) != 1 {
		t.Fatalf("files %q (%v), want one", files, err)
	}
	if got := readCreds(t, files[0]+".status"); got.String() != want.String() {
		t.Errorf("the -z command ran with\n%v\nwant\n%v", got, want)
	}
}
