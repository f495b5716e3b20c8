package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ringcapProc is ringcap running in the receiving namespace.
type ringcapProc struct {
	cmd      *exec.Cmd
	stdout   io.ReadCloser
	mu       sync.Mutex
	stderr   bytes.Buffer
	attached chan struct{}
	done     chan struct{}
}

// start runs ringcap record on the receiving end's first interface and
// returns once it says it is capturing.
func (p *vethPair) start(t *testing.T, args ...string) *ringcapProc {
	t.Helper()
	return p.startRecord(t, append([]string{"-i", rxIf}, args...)...)
}

// startRecord runs ringcap record with args. Unless args choose with -Q,
// it captures inbound frames only: most tests count what they send, not
// the replies.
func (p *vethPair) startRecord(t *testing.T, args ...string) *ringcapProc {
	t.Helper()
	if !slices.Contains(args, "-Q") {
		args = append([]string{"-Q", "in"}, args...)
	}
	return p.startWrapped(t, nil, append([]string{"record"}, args...)...)
}

// startWrapped runs wrapper (a command that runs the rest of its
// arguments), then ringcap with args, in the receiving namespace.
func (p *vethPair) startWrapped(t *testing.T, wrapper []string, args ...string) *ringcapProc {
	t.Helper()
	return startCommand(t, "ip", slices.Concat([]string{"netns", "exec", p.Rx}, wrapper, []string{binary}, args)...)
}

// startCommand runs name with args, a command that runs ringcap, and
// returns once ringcap says it is capturing.
func startCommand(t *testing.T, name string, args ...string) *ringcapProc {
	t.Helper()
	return startCmd(t, exec.Command(name, args...))
}

// startCmd starts cmd, a command that runs ringcap, as startCommand does.
func startCmd(t *testing.T, cmd *exec.Cmd) *ringcapProc {
	t.Helper()
	r := &ringcapProc{cmd: cmd, attached: make(chan struct{}), done: make(chan struct{})}
	// Should the test binary die (a timeout's panic), ringcap dies with
	// it instead of holding an interface.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := r.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if r.stdout, err = r.cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cmd.Process.Kill(); <-r.done })
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			r.mu.Lock()
			r.stderr.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
			if strings.Contains(sc.Text(), "capturing on") {
				once.Do(func() { close(r.attached) })
			}
		}
	}()
	select {
	case <-r.attached:
	case <-r.done:
		r.cmd.Wait()
		t.Fatalf("ringcap exited before capturing:\n%s", r.errors())
	case <-time.After(15 * time.Second):
		t.Fatalf("ringcap did not start capturing within 15s:\n%s", r.errors())
	}
	return r
}

func (r *ringcapProc) errors() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stderr.String()
}

// stop sends sig and returns ringcap's exit code once it has exited.
func (r *ringcapProc) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return r.wait(t)
}

func (r *ringcapProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("ringcap did not exit within 15s:\n%s", r.errors())
	}
	err := r.cmd.Wait()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return r.cmd.ProcessState.ExitCode()
}

// stopped waits until ringcap, sent SIGSTOP, is stopped: the signal
// arrives a moment after kill returns, and its reader could still take a
// record meanwhile.
func (r *ringcapProc) stopped(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return processState(t, r.cmd.Process.Pid) == "T" }) {
		t.Fatal("ringcap did not stop on SIGSTOP")
	}
}

// processState is the state letter of process pid in /proc: R, S, T, ...
func processState(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// pid (comm) state ...: comm may hold spaces, so look after its ")".
	_, rest, _ := strings.Cut(string(b), ") ")
	state, _, _ := strings.Cut(rest, " ")
	return state
}
