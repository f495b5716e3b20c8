package main

import (
	"strings"
	"syscall"
	"testing"
)

// The variables through which ringcap once re-executed itself into a
// namespace do nothing when a caller sets them, even with the pid they
// name matching (exec keeps the shell's pid): ringcap interfaces lists
// its own namespace, and with --netns the one --netns names.
func TestNetnsVariablesIgnored(t *testing.T) {
	p := newVethPair(t)
	listed := func(r result, ifc string) bool { return strings.Contains(r.stdout, "."+ifc+" [") }
	// Without the variables, --netns tells the two namespaces apart.
	if r := runRingcap(t, nil, "interfaces", "--netns", p.Rx); r.code != 0 || !listed(r, rxIf) || listed(r, txIf) {
		t.Fatalf("ringcap interfaces --netns %s: exit %d, does not list %s alone:\n%s%s", p.Rx, r.code, rxIf, r.stdout, r.stderr)
	}
	withVariables := func(args ...string) result {
		t.Helper()
		script := `RINGCAP_NETNS=/run/netns/$0 RINGCAP_NETNS_NAME=$0 RINGCAP_NETNS_PID=$$ exec "$@"`
		return runCommand(t, "sh", append([]string{"-c", script, p.Rx, binary, "interfaces"}, args...)...)
	}
	r := withVariables()
	if r.code != 0 || r.stderr != "" || !listed(r, "lo") || listed(r, rxIf) || listed(r, txIf) {
		t.Errorf("with RINGCAP_NETNS naming %s: exit %d, lists another namespace than ringcap's own:\n%s%s", p.Rx, r.code, r.stdout, r.stderr)
	}
	r = withVariables("--netns", p.Tx)
	if r.code != 0 || r.stderr != "" || !listed(r, txIf) || listed(r, rxIf) {
		t.Errorf("with RINGCAP_NETNS naming %s and --netns %s: exit %d, does not list %s alone:\n%s%s", p.Rx, p.Tx, r.code, txIf, r.stdout, r.stderr)
	}
}

// Without the privilege to enter it, --netns is one line that says so,
// and ringcap lists nothing.
func TestNetnsNotPermitted(t *testing.T) {
	p := newVethPair(t)
	r := runRingcap(t, &syscall.Credential{Uid: 65534, Gid: 65534}, "interfaces", "--netns", p.Rx)
	want := "ringcap: --netns " + p.Rx + ": operation not permitted: entering a network namespace needs root (CAP_SYS_ADMIN)\n"
	if r.code != exitRuntime || r.stderr != want || r.stdout != "" {
		t.Errorf("as nobody: exit %d, stderr %q, stdout %q; want exit %d and %q", r.code, r.stderr, r.stdout, exitRuntime, want)
	}
}
