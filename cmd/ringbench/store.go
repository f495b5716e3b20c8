package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ringcap/ringcap/cmd/internal/veth"
)

const (
	storeAddr   = "127.0.0.1:7070"
	storeBucket = "ringbench"
)

// store is the S3 server ringcap-upload uploads to: versitygw, as the
// tests run it, on loopback in the receiving namespace, its posix backend
// over a directory of ringbench's.
type store struct {
	cmd *exec.Cmd
	dir string
	env []string
}

func startStore(p *veth.Network, dir string) (*store, error) {
	s := &store{dir: filepath.Join(dir, "store")}
	if err := os.MkdirAll(filepath.Join(s.dir, storeBucket), 0o755); err != nil {
		return nil, err
	}
	s.cmd = exec.Command("ip", "netns", "exec", p.Rx, "versitygw", "--port", storeAddr,
		"--access", "ringbench", "--secret", "ringbench-secret", "--quiet", "posix", s.dir)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start versitygw (make deps installs it): %w", err)
	}
	host, port, _ := net.SplitHostPort(storeAddr)
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		probe := exec.Command("ip", "netns", "exec", p.Rx, "bash", "-c", "exec 3<>/dev/tcp/"+host+"/"+port)
		if probe.Run() == nil {
			break
		}
		if time.Now().After(end) {
			s.stop()
			return nil, fmt.Errorf("versitygw does not answer on %s", storeAddr)
		}
	}
	s.env = []string{"AWS_ACCESS_KEY_ID=ringbench", "AWS_SECRET_ACCESS_KEY=ringbench-secret",
		"AWS_ENDPOINT_URL=http://" + storeAddr, "AWS_REGION=us-east-1",
		"AWS_CONFIG_FILE=/nonexistent", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent", "AWS_EC2_METADATA_DISABLED=true"}
	return s, nil
}

// holds reports whether the store has an object of each file's size.
func (s *store) holds(paths []string) error {
	for _, path := range paths {
		local, err := os.Stat(path)
		if err != nil {
			return err
		}
		stored, err := os.Stat(filepath.Join(s.dir, storeBucket, "ringbench", filepath.Base(path)))
		if err != nil || stored.Size() != local.Size() {
			return fmt.Errorf("the store does not hold %s", filepath.Base(path))
		}
	}
	return nil
}

func (s *store) stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}
