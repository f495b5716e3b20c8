// Package s3test runs a real S3-compatible server for tests: versitygw
// (Apache-2.0) with its posix backend over a temporary directory, on
// loopback, in the network namespace its caller names.
package s3test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringcap/ringcap/bpf/bpftest"
)

// Server is one versitygw process; Kill and Start stop it and start it
// again over the same directory and address.
type Server struct {
	t       testing.TB
	wrapper []string // runs the server in a namespace: ip netns exec NS
	dir     string
	cmd     *exec.Cmd
	exited  chan struct{}

	Addr           string // 127.0.0.1:7070
	Bucket         string
	Access, Secret string
}

// New makes a bucket in a new directory and starts the server, which
// stops when t ends. wrapper runs the server (ip netns exec NS), or is
// empty.
func New(t testing.TB, wrapper ...string) *Server {
	t.Helper()
	bpftest.RequireTool(t, "versitygw")
	s := &Server{t: t, wrapper: wrapper, dir: t.TempDir(), Addr: "127.0.0.1:7070", Bucket: "captures",
		Access: "ringcap-test", Secret: "ringcap-test-secret"}
	// A bucket of the posix backend is a directory.
	if err := os.Mkdir(filepath.Join(s.dir, s.Bucket), 0o755); err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Kill)
	return s
}

// Env is what a client needs to reach the server through the AWS SDK's
// standard sources, and nothing from the machine's own configuration.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.Access, "AWS_SECRET_ACCESS_KEY=" + s.Secret,
		"AWS_ENDPOINT_URL=http://" + s.Addr, "AWS_REGION=us-east-1",
		"AWS_CONFIG_FILE=/nonexistent", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent",
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// SetEnv puts Env into the test's environment.
func (s *Server) SetEnv(t testing.TB) {
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// Start starts the server and returns once it accepts connections.
func (s *Server) Start() {
	s.t.Helper()
	args := slices.Concat(s.wrapper, []string{"versitygw", "--port", s.Addr, "--access", s.Access, "--secret", s.Secret,
		"--quiet", "posix", s.dir})
	s.cmd = exec.Command(args[0], args[1:]...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := s.cmd.StderrPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd.Stdout = io.Discard
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan struct{})
	var log strings.Builder
	go func() {
		defer close(s.exited)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
		}
		s.cmd.Wait()
	}()
	for end := time.Now().Add(30 * time.Second); !s.answers(); time.Sleep(50 * time.Millisecond) {
		select {
		case <-s.exited:
			s.t.Fatalf("versitygw exited: %s", log.String())
		default:
		}
		if time.Now().After(end) {
			s.t.Fatalf("versitygw does not answer on %s after 30s", s.Addr)
		}
	}
}

// answers dials the server, in its namespace.
func (s *Server) answers() bool {
	if len(s.wrapper) == 0 {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	// bash's /dev/tcp, in the namespace.
	host, port, _ := net.SplitHostPort(s.Addr)
	args := slices.Concat(s.wrapper, []string{"bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s", host, port)})
	return exec.Command(args[0], args[1:]...).Run() == nil
}

// Kill stops the server at once, as a crash would.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Object returns what the store holds under key, read from the posix
// backend's directory, where an object is a file once it is complete.
func (s *Server) Object(key string) ([]byte, error) {
	return os.ReadFile(s.Path(key))
}

// Path is the file of the posix backend that holds key.
func (s *Server) Path(key string) string { return filepath.Join(s.dir, s.Bucket, key) }

// Keys lists the complete objects under prefix.
func (s *Server) Keys(prefix string) []string {
	s.t.Helper()
	var keys []string
	root := filepath.Join(s.dir, s.Bucket)
	err := filepath.WalkDir(filepath.Join(root, prefix), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir // the backend's own (uploads in progress)
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, path)
			keys = append(keys, rel)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		s.t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}
