package main

import (
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ringcap/ringcap/writer"
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

// newPostRotate runs command in env; nil env: ringcap's.
func newPostRotate(command string, env []string, stderr io.Writer) *postRotate {
	return &postRotate{command: command, env: env, stderr: stderr}
}

// run starts the command on path and returns the Release that lets
// --max-files delete the file once the command has ended. The path is
// passed as an argument, never spliced into the shell's text.
func (p *postRotate) run(path string) writer.Release {
	if p.command == "" {
		return writer.Release{}
	}
	release, decide := writer.NewRelease()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer decide(writer.Deletable)
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
	return release
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
