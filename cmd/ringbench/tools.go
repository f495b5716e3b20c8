package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ringcap/ringcap/cmd/internal/veth"
)

// tool is a capture tool as ringbench runs it on the receiving end,
// recording the oversize frames (L3 length above 1500) with snap length
// 256.
type tool struct {
	name  string
	args  func(out string) []string // command line; out is the file to write
	ready string                    // what it prints once it captures
	// needsPass: the tool brings no XDP program, so the receiving veth
	// needs one to take the generator's frames.
	needsPass bool
	// store: the tool uploads to the S3 server ringbench runs beside it
	// (store.go), whose address and credentials env gives.
	store bool
	env   []string
	st    *store
	// pipeTo, if set, is a command (in ringbench's namespace) that reads
	// the tool's standard output, given the file args wrote to.
	pipeTo func(out string) []string
}

func tools(ringcap string) []tool {
	rotate := func(out string) []string {
		return []string{ringcap, "record", "-Q", "in", "-i", rxIf, "-w", out, "-q", "--mode", "native", "--ring-size", "64MiB", "-C", "64MiB"}
	}
	return []tool{
		{name: "none", needsPass: true},
		{
			name: "ringcap",
			args: func(out string) []string {
				return []string{ringcap, "record", "-Q", "in", "-i", rxIf, "-w", out, "-q", "--mode", "native", "--ring-size", "64MiB"}
			},
			ready: "capturing on",
		},
		{
			// The baseline of ringcap-upload: the same files.
			name:  "ringcap-rotate",
			args:  rotate,
			ready: "capturing on",
		},
		{
			// Each finished file to the S3 server on loopback.
			name: "ringcap-upload",
			args: func(out string) []string {
				// Every file sent before it exits: its CPU time is
				// the capture's and the uploads'.
				return append(rotate(out), "--upload", "s3://"+storeBucket+"/ringbench", "--upload-timeout", "5m")
			},
			ready: "capturing on",
			store: true,
		},
		{
			// ringcap beside another XDP program (ringbench's
			// XDP_PASS one), at tcx ingress.
			name: "ringcap-tc",
			args: func(out string) []string {
				return []string{ringcap, "record", "-Q", "in", "--hook", "tc", "-i", rxIf, "-w", out, "-q", "--ring-size", "64MiB"}
			},
			ready:     "capturing on",
			needsPass: true,
		},
		{
			name: "tcpdump",
			args: func(out string) []string {
				return []string{"tcpdump", "-i", rxIf, "-B", "65536", "-s", "256", "-w", out, "greater", "1515"}
			},
			ready:     "listening on",
			needsPass: true,
		},
		{
			name: "dumpcap",
			args: func(out string) []string {
				return []string{"dumpcap", "-i", rxIf, "-B", "64", "-s", "256", "-f", "greater 1515", "-w", out}
			},
			ready:     "Capturing on",
			needsPass: true,
		},
		{
			name:      "xdpdump",
			args:      func(out string) []string { return []string{"xdpdump", "-i", rxIf, "-s", "256", "-w", out} },
			ready:     "listening on",
			needsPass: true,
		},
	}
}

// running is a tool capturing in the receiving namespace.
type running struct {
	cmd    *exec.Cmd
	reader *exec.Cmd // the tool's pipeTo; nil without
	out    string
	mu     sync.Mutex
	output bytes.Buffer
	ready  chan struct{}
	done   chan struct{}
}

func (t tool) start(p *veth.Network, dir string) (*running, error) {
	r := &running{out: filepath.Join(dir, t.name+".pcapng"), ready: make(chan struct{}), done: make(chan struct{})}
	// No file of an earlier run: written counts this run's, and
	// ringcap-upload would send them first.
	os.Remove(r.out)
	if old, err := r.files(); err == nil {
		for _, path := range old {
			os.Remove(path)
		}
	}
	r.cmd = exec.Command("ip", append([]string{"netns", "exec", p.Rx}, t.args(r.out)...)...)
	r.cmd.Env = append(os.Environ(), t.env...)
	pipe, err := r.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	r.cmd.Stdout = r.cmd.Stderr
	// A tool must not outlive ringbench, which owns its namespace.
	// (ip execs the tool, which keeps the setting.)
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := r.startReader(t); err != nil {
		return nil, err
	}
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", t.name, err)
	}
	if r.reader != nil {
		if err := r.reader.Start(); err != nil {
			r.cmd.Process.Kill()
			return nil, fmt.Errorf("start %s's reader: %w", t.name, err)
		}
	}
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(pipe)
		var once sync.Once
		for sc.Scan() {
			r.mu.Lock()
			r.output.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
			if strings.Contains(sc.Text(), t.ready) {
				once.Do(func() { close(r.ready) })
			}
		}
	}()
	select {
	case <-r.ready:
		// Tools print their line a little before the capture is set up.
		time.Sleep(300 * time.Millisecond)
		return r, nil
	case <-r.done:
		r.cmd.Wait()
		return nil, fmt.Errorf("%s exited: %s", t.name, strings.TrimSpace(r.text()))
	case <-time.After(15 * time.Second):
		r.cmd.Process.Kill()
		return nil, fmt.Errorf("%s did not start within 15s: %s", t.name, strings.TrimSpace(r.text()))
	}
}

// startReader makes the tool's standard output the input of its pipeTo
// command, if it has one.
func (r *running) startReader(t tool) error {
	if t.pipeTo == nil {
		return nil
	}
	args := t.pipeTo(r.out)
	r.reader = exec.Command(args[0], args[1:]...)
	r.reader.Stderr = os.Stderr
	r.reader.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	var err error
	r.cmd.Stdout = nil
	r.reader.Stdin, err = r.cmd.StdoutPipe()
	return err
}

func (r *running) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.output.String()
}

// stop ends the capture as a user would, with SIGINT, and returns the CPU
// time the tool's process used.
func (r *running) stop() (time.Duration, error) {
	r.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-r.done:
	case <-time.After(6 * time.Minute): // ringcap-upload's files
		r.cmd.Process.Kill()
		<-r.done
	}
	r.cmd.Wait()
	st := r.cmd.ProcessState
	if st == nil {
		return 0, fmt.Errorf("no exit status")
	}
	cpu := st.UserTime() + st.SystemTime()
	if r.reader != nil {
		// The reader's CPU time is the tool's too.
		if err := r.reader.Wait(); err != nil {
			return cpu, fmt.Errorf("%s: %w", r.reader.Args[0], err)
		}
		cpu += r.reader.ProcessState.UserTime() + r.reader.ProcessState.SystemTime()
	}
	return cpu, nil
}

var capinfosPackets = regexp.MustCompile(`Number of packets:\s+(\d+)`)

// files are the tool's files: the one it was given, or those it rotated
// through, compressed (ringcap --compress, the default with --upload) or
// not.
func (r *running) files() ([]string, error) {
	if _, err := os.Stat(r.out); err == nil {
		return []string{r.out}, nil
	}
	var paths []string
	for _, ext := range []string{"", ".gz", ".lz4", ".zst"} {
		found, err := filepath.Glob(strings.TrimSuffix(r.out, ".pcapng") + "_*.pcapng" + ext)
		if err != nil {
			return nil, err
		}
		paths = append(paths, found...)
	}
	return paths, nil
}

// written counts the frames in the tool's files.
func (r *running) written() (uint64, error) {
	paths, err := r.files()
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, path := range paths {
		out, err := exec.Command("capinfos", "-c", "-M", path).CombinedOutput()
		m := capinfosPackets.FindSubmatch(out)
		if m == nil {
			return 0, fmt.Errorf("capinfos %s: %v: %s", path, err, out)
		}
		c, err := strconv.ParseUint(string(m[1]), 10, 64)
		if err != nil {
			return 0, err
		}
		n += c
	}
	return n, nil
}
