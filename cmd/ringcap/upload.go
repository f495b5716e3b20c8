package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ringcap/ringcap/writer"
	"github.com/ringcap/ringcap/writer/upload"
)

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
		return opts, false, badUsage(c, "%v", err)
	}
	if out.Path == "-" {
		return opts, false, badUsage(c, "--upload needs files, not standard output")
	}
	opts.delete, opts.timeout, opts.retryMax = c.Bool("upload-delete"), c.Duration("upload-timeout"), c.Duration("upload-retry-max")
	if opts.timeout < 0 {
		return opts, false, badUsage(c, "--upload-timeout %v is negative", opts.timeout)
	}
	if opts.retryMax <= 0 {
		return opts, false, badUsage(c, "--upload-retry-max %v: give a positive duration", opts.retryMax)
	}
	return opts, true, nil
}

// uploads sends a capture's finished files, and those an earlier run left
// unsent, to the store.
type uploads struct {
	opts   uploadOptions
	up     *upload.Uploader
	stderr io.Writer
	mu     *sync.Mutex // stderr's lines
}

func startUploads(ctx context.Context, opts uploadOptions, out writer.Config, stderr io.Writer) (*uploads, error) {
	x := &uploads{opts: opts, stderr: stderr, mu: &sync.Mutex{}}
	var err error
	x.up, err = upload.New(ctx, upload.Config{Target: opts.target, Delete: opts.delete, Logf: x.line,
		MinBackoff: min(time.Second, opts.retryMax), MaxBackoff: opts.retryMax})
	if err != nil {
		return nil, err
	}
	earlier, err := out.Earlier()
	if err != nil {
		x.up.Stop(0)
		return nil, fmt.Errorf("--upload: look for files an earlier run left: %w", err)
	}
	for _, path := range earlier {
		x.up.Resume(path)
	}
	if len(earlier) > 0 {
		x.line("--upload: %d files an earlier run wrote to %s go first, unless the store holds them", len(earlier), filepath.Dir(out.Path))
	}
	// The capture starts whatever the store says.
	go func() {
		if err := x.up.Check(ctx, 10*time.Second); err != nil {
			x.line("--upload %s at %s: %v: files are kept, and sent once it answers", opts.target, x.up.Endpoint(), err)
		}
	}()
	return x, nil
}

func (x *uploads) line(format string, args ...any) {
	x.mu.Lock()
	defer x.mu.Unlock()
	fmt.Fprintf(x.stderr, "ringcap: "+format+"\n", args...)
}

// send queues a finished file; the channel says when --max-files may
// delete it.
func (x *uploads) send(path string) <-chan bool { return x.up.Send(path) }

// drain starts the bounded wait at exit, before the last file is
// finished: --max-files' deletions wait for uploads that end by then.
func (x *uploads) drain() { x.up.Drain(x.opts.timeout) }

// finish waits for the uploads and says what the store got and what is
// left.
func (x *uploads) finish() {
	unsent := x.up.Wait()
	st := x.up.Stats()
	x.line("%d files (%s) in %s, %d failed tries", st.Files, formatBytes(st.Bytes), x.opts.target, st.Failures)
	if len(unsent) > 0 {
		names := make([]string, len(unsent))
		for i, p := range unsent {
			names[i] = filepath.Base(p)
		}
		x.line("%d files not sent within --upload-timeout %v, kept for the next run with the same -w and --upload: %s",
			len(unsent), x.opts.timeout, strings.Join(names, " "))
	}
}

// bothReleased releases a file once each of the channels has, and only if
// each let it go; a nil channel lets it go at once.
func bothReleased(a, b <-chan bool) <-chan bool {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	both := make(chan bool, 1)
	go func() {
		okA, okB := <-a, <-b
		both <- okA && okB
	}()
	return both
}
