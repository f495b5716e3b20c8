package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ringcap/ringcap/writer"
	"github.com/ringcap/ringcap/writer/upload"
)

// defaultUploadCompression is --compress with --upload when it is not
// given: zstd made the smallest files of the three kinds for half gzip's
// CPU, and the capture wrote as many frames with it as without
// (docs/performance.md, Compression).
const defaultUploadCompression = writer.Zstd

// defaultUploadTimeout bounds the wait for uploads at exit: within
// Kubernetes' default grace period of 30 seconds, and systemd's 90.
const defaultUploadTimeout = 20 * time.Second

func uploadFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "upload", Usage: "upload each finished file to S3 as `s3://BUCKET/PREFIX`/<file name>; credentials, region and endpoint (AWS_ENDPOINT_URL) as the AWS SDK finds them"},
		&cli.BoolFlag{Name: "upload-delete", Usage: "with --upload, delete each file once the store holds it"},
		&cli.DurationFlag{Name: "upload-timeout", Value: defaultUploadTimeout, Usage: "at exit, wait at most `D` for uploads; what is left is sent by the next run"},
		// For tests, which restart the store and should not wait 30
		// seconds for the next try.
		&cli.DurationFlag{Name: "upload-retry-max", Hidden: true, Value: 30 * time.Second, Usage: "the longest wait between tries of an upload"},
	}
}

type uploadOptions struct {
	target   upload.Target
	delete   bool
	timeout  time.Duration
	retryMax time.Duration
}

// parseUpload reads the upload flags; ok is false without --upload.
func parseUpload(c *cli.Context, out writer.Config) (opts uploadOptions, ok bool, err error) {
	url := c.String("upload")
	if url == "" {
		if c.IsSet("upload-delete") || c.IsSet("upload-timeout") {
			return opts, false, badUsage(c, "--upload-delete and --upload-timeout need --upload s3://BUCKET/PREFIX")
		}
		return opts, false, nil
	}
	if opts.target, err = upload.ParseURL(url); err != nil {
		return opts, false, badUsage(c, "--upload %v", err)
	}
	if err := checkBucket(opts.target.Bucket); err != nil {
		return opts, false, badUsage(c, "--upload %q: %v", url, err)
	}
	if err := checkPrefix(opts.target.Prefix); err != nil {
		return opts, false, badUsage(c, "--upload %q: %v", url, err)
	}
	if out.Path == "-" {
		return opts, false, badUsage(c, "--upload needs files, not standard output")
	}
	// checkFlagValues has bounded the durations.
	opts.delete, opts.timeout, opts.retryMax = c.Bool("upload-delete"), c.Duration("upload-timeout"), c.Duration("upload-retry-max")
	return opts, true, nil
}

// checkBucket applies S3's rules for bucket names: 3 to 63 characters,
// lowercase letters, digits, dots and hyphens, a letter or digit at each
// end, no two dots together, not an IPv4 address. Written out here: the
// AWS SDK applies them only inside its endpoint resolution, and answers
// a name that breaks them with an error about the endpoint.
func checkBucket(name string) error {
	rules := "S3 bucket names have 3 to 63 lowercase letters, digits, dots and hyphens, and start and end with a letter or digit"
	alnum := func(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }
	if len(name) < 3 || len(name) > 63 {
		return fmt.Errorf("bucket name of %d characters: %s", len(name), rules)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !alnum(c) && c != '.' && c != '-' {
			return fmt.Errorf("bucket %q: %q cannot be in it: %s", name, c, rules)
		}
	}
	switch {
	case !alnum(name[0]) || !alnum(name[len(name)-1]):
		return fmt.Errorf("bucket %q: %s", name, rules)
	case strings.Contains(name, ".."):
		return fmt.Errorf("bucket %q: two dots together: %s", name, rules)
	case net.ParseIP(name) != nil:
		return fmt.Errorf("bucket %q is an IP address: give the bucket's name (the store's address goes in AWS_ENDPOINT_URL)", name)
	}
	return nil
}

// checkPrefix refuses a prefix whose objects would not be named as it
// reads: an empty segment (a//b), which the keys would lose, and . or ..,
// which a store or a tool that copies objects into directories may
// resolve to somewhere else.
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	for _, seg := range strings.Split(prefix, "/") {
		switch seg {
		case "":
			return fmt.Errorf("prefix %q has an empty segment (//): give each / once", prefix)
		case ".", "..":
			return fmt.Errorf("prefix %q has a %q segment: give the path the objects go to, without . or .. segments", prefix, seg)
		}
	}
	return nil
}

// uploads sends a capture's finished files, and those an earlier run left
// unsent, to the store.
type uploads struct {
	opts     uploadOptions
	uploader *upload.Uploader
	stderr   io.Writer
	mu       sync.Mutex // stderr's lines
	rotating bool       // an earlier run's files are found by their names
	// leftovers counts an earlier run's files queued: at Create, and
	// from the compressor for one it left uncompressed.
	leftovers atomic.Int64
	chain     sync.WaitGroup // -z commands whose file is sent once they end
	handed    atomic.Int64   // files given to send or settle, this run's and earlier runs'
}

func startUploads(ctx context.Context, opts uploadOptions, out writer.Config, stderr io.Writer) (*uploads, error) {
	u := &uploads{opts: opts, stderr: stderr, rotating: out.Policy.Rotates()}
	var err error
	u.uploader, err = upload.New(ctx, upload.Config{Target: opts.target, Delete: opts.delete, Logf: u.line,
		MinBackoff: min(time.Second, opts.retryMax), MaxBackoff: opts.retryMax})
	if err != nil {
		return nil, fmt.Errorf("--upload: %w", err)
	}
	// The capture starts whatever the store says.
	go func() {
		if err := u.uploader.Check(ctx, 10*time.Second); err != nil {
			u.line("--upload %s at %s: %v: files are kept, and sent once it answers", opts.target, u.uploader.Endpoint(), err)
		}
	}()
	return u, nil
}

func (u *uploads) line(format string, args ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fmt.Fprintf(u.stderr, "ringcap: "+format+"\n", args...)
}

// after returns what follows a finished file: the --post-rotate command,
// then the upload of the file as the command left it (one that moved it
// away, as gzip does, leaves nothing to send). The Release says when
// --max-files may delete the file.
func (u *uploads) after(post *postRotate) func(path string) writer.Release {
	return func(path string) writer.Release {
		u.handed.Add(1)
		if post.command == "" {
			return u.uploader.Send(path)
		}
		ran := post.run(path)
		both, decide := writer.NewRelease()
		u.chain.Add(1)
		go func() {
			ended := ran.Wait()
			sent := u.uploader.Send(path)
			u.chain.Done()
			if sent.Wait() == writer.Deletable && ended == writer.Deletable {
				decide(writer.Deletable)
			} else {
				decide(writer.Keep)
			}
		}()
		return both
	}
}

// adopt takes a file an earlier run left: one the store holds (marked so)
// may go at once, the others are sent first.
func (u *uploads) adopt(path string) writer.Release {
	u.handed.Add(1)
	if u.uploader.SettleStored(path) {
		return writer.Release{}
	}
	u.leftovers.Add(1)
	return u.uploader.Resume(path)
}

// leftoverFiles is how many files an earlier run left are queued so far;
// 0 without --upload (u nil).
func (u *uploads) leftoverFiles() int64 {
	if u == nil {
		return 0
	}
	return u.leftovers.Load()
}

// drain starts the bounded wait at exit, before the last file is
// finished: --max-files' deletions wait for uploads that end by then.
func (u *uploads) drain() { u.uploader.Drain(u.opts.timeout) }

// finish waits for the uploads and says what the store got and what is
// left. Given no file (an open that failed before the files), it says
// nothing: the line that says why is ringcap's one.
func (u *uploads) finish() {
	u.chain.Wait() // each --post-rotate command has ended and queued its file
	unsent := u.uploader.Wait()
	if u.handed.Load() == 0 {
		return
	}
	st := u.uploader.Stats()
	found := ""
	if st.Found > 0 {
		found = fmt.Sprintf(", %d an earlier run left found there", st.Found)
	}
	u.line("%d files (%s) sent to %s%s, %d failed tries", st.Files, formatBytes(st.Bytes), u.opts.target, found, st.Failures)
	if len(unsent) > 0 {
		names := make([]string, len(unsent))
		for i, p := range unsent {
			names[i] = filepath.Base(p)
		}
		next := "kept for the next run with the same -w and --upload"
		if !u.rotating {
			// Without rotation the next run refuses the name, or
			// overwrites it with --force.
			next = "kept; without rotation no run sends them again: upload them yourself"
		}
		u.line("%d files not sent within --upload-timeout %v, %s: %s", len(unsent), u.opts.timeout, next, strings.Join(names, " "))
	}
}
