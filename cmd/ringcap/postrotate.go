package main

import (
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
)

// postRotate runs the user's --post-rotate command on every finished file,
// in the background so that capture never waits for it.
type postRotate struct {
	command  string
	env      []string // the commands' environment; nil: ringcap's
	stderr   io.Writer
	wg       sync.WaitGroup
	failures atomic.Uint64
}

func newPostRotate(command string, stderr io.Writer) *postRotate {
	return &postRotate{command: command, stderr: stderr}
}

// run starts the command on path and returns a channel that yields true
// when it has ended: --max-files deletes the file only then. The path is
// passed as an argument, never spliced into the shell's text.
func (p *postRotate) run(path string) (ended <-chan bool) {
	if p.command == "" {
		return nil
	}
	done := make(chan bool, 1)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() { done <- true }()
		cmd := exec.Command("/bin/sh", "-c", p.command+` "$1"`, "ringcap-post-rotate", path)
		cmd.Env = p.env
		out, err := cmd.CombinedOutput()
		if err != nil {
			p.failures.Add(1)
			msg := strings.TrimSpace(string(out))
			if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
				msg = msg[i+1:]
			}
			fmt.Fprintf(p.stderr, "ringcap: --post-rotate %q on %s failed (%v): %s; capture goes on\n", p.command, path, err, msg)
		}
	}()
	return done
}

// withoutAWS returns env without the AWS SDK's variables (AWS_*).
func withoutAWS(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "AWS_") {
			out = append(out, kv)
		}
	}
	return out
}

// wait returns when every command started has ended.
func (p *postRotate) wait() { p.wg.Wait() }
