package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/capture"
	"github.com/ringcap/ringcap/writer"
)

// record runs one capture until a signal, the count or the duration ends
// it, then writes out every frame left in the ring and prints a summary.
func record(ctx context.Context, opts recordOptions, stderr io.Writer) error {
	r, err := openRecorder(ctx, opts, stderr)
	if err != nil {
		return err
	}
	return r.close(r.run(ctx))
}

// recorder is one run of record: the capture, the files it writes, what
// follows a finished file (-z, then --upload), the metrics, the status
// line and the lines that tell of interfaces coming and going. open
// starts the parts, close ends them, each in the order its comment gives.
type recorder struct {
	opts    recordOptions
	stderr  io.Writer
	metrics *metricsEndpoint // nil without --metrics
	capt    *capture.Capture
	post    *postRotate
	up      *uploads // nil without --upload
	files   *writer.Files
	sink    *captureSink
	status  *status
	// restoreSignals gives Ctrl-C and SIGTERM back their default: once
	// the capture has stopped, a second Ctrl-C kills ringcap.
	restoreSignals context.CancelFunc
	// uploadsClosed: closeUploads has ended the uploads, which it does
	// once, whichever of close or a failed open comes to it first.
	uploadsClosed bool
}

// openRecorder opens the parts in the order they need each other: the
// metrics address and the capture first, as root, so that one that
// cannot be had stops ringcap before anything is written; then -z and
// --upload, whose AWS configuration is read as the user ringcap was
// started as; then, as -Z's user, the files, which hand their finished
// files to -z and --upload. What was opened when one fails is closed.
func openRecorder(ctx context.Context, opts recordOptions, stderr io.Writer) (*recorder, error) {
	r := &recorder{opts: opts, stderr: stderr}
	if err := r.open(ctx); err != nil {
		r.closeOutlasting()
		return nil, err
	}
	return r, nil
}

func (r *recorder) open(ctx context.Context) error {
	var err error
	if r.opts.metrics != "" {
		if r.metrics, err = openMetricsEndpoint(r.opts.metrics); err != nil {
			return err
		}
	}
	if r.capt, err = capture.Open(r.opts.capture); err != nil {
		return withFlags(err)
	}
	var postEnv []string // -z's environment; nil: ringcap's
	if r.opts.uploading {
		// The credentials --upload uses are ringcap's, not -z's.
		postEnv = withoutAWS(os.Environ())
	}
	r.post = newPostRotate(r.opts.postRotate, postEnv, r.stderr)
	finished := r.post.run
	if r.opts.uploading {
		if r.up, err = startUploads(ctx, r.opts.upload, r.opts.output, r.stderr); err != nil {
			return err
		}
		finished = r.up.after(r.post)
		r.opts.output.Adopt = r.up.adopt
	}
	if err := r.opts.privileges.drop(func() error { _, err := r.capt.Counters(); return err }); err != nil {
		return err
	}
	if err := r.opts.privileges.checkOutputDir(r.opts.output.Path); err != nil {
		return err
	}
	return r.openFiles(finished)
}

// openFiles creates the files, with an interface for each hook, and
// starts what reads them: the capture's lines and the metrics.
func (r *recorder) openFiles(finished func(path string) writer.Release) error {
	hooks := r.capt.Hooks()
	ifaces := make([]writer.Interface, len(hooks))
	for i, h := range hooks {
		ifaces[i] = fileInterface(h, r.opts.capture, r.opts.netns)
	}
	files, err := createFiles(r.opts.output, ifaces, r.capt, time.Now, finished)
	if err != nil {
		// A disk an earlier run filled: its files go out (and, with
		// --upload-delete, make room) before ringcap exits.
		r.closeUploads()
		return err
	}
	r.files = files
	if n := r.up.leftoverFiles(); n > 0 {
		r.up.line("--upload: %d files an earlier run wrote to %s go first", n, filepath.Dir(r.opts.output.Path))
	}
	r.sink = &captureSink{files: files, capt: r.capt, cfg: r.opts.capture, netns: r.opts.netns, stderr: r.stderr}
	if r.metrics != nil {
		r.metrics.serve(newMetrics(r.capt, files, r.post, r.up), r.stderr)
	}
	return nil
}

// run captures until a signal, the count or the duration ends it, the
// last interface goes away, or the reader of standard output does.
func (r *recorder) run(ctx context.Context) error {
	ctx, r.restoreSignals = signalContext(ctx)
	if r.opts.output.Path == "-" {
		var stop context.CancelFunc
		ctx, stop = readerGoneContext(ctx, os.Stdout)
		defer stop()
	}
	if r.opts.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.opts.duration)
		defer cancel()
	}
	r.sink.announce()
	r.status = startStatus(r.stderr, r.opts.quiet, r.capt, r.files)
	return r.capt.Run(ctx, r.sink, r.opts.count)
}

// close ends a run that runErr stopped. The order is what loses nothing:
//
//  1. the status line, which the lines below would be written over;
//  2. the uploads' bounded wait (--upload-timeout) starts, before the
//     last file is finished: retention (--max-files) deletes a file only
//     once its -z command has ended and the store holds it, and waits for
//     that no longer than the uploads do;
//  3. the files: the last one is finished, its -z command and upload
//     start, and retention deletes what they let go;
//  4. the summary, from the capture's counters and the files';
//  5. the uploads: each -z command an upload waits for ends, then the
//     uploads do, or their wait; a line says what the store got;
//  6. what outlasts the files, in closeOutlasting.
func (r *recorder) close(runErr error) error {
	// The last interface going away ends the capture as Ctrl-C does,
	// but with exit status 1, so that a service manager starts ringcap
	// again.
	allGone := errors.Is(runErr, capture.ErrNoInterface)
	if allGone {
		runErr = nil
	}
	r.status.stop()
	if r.up != nil {
		r.up.drain()
	}
	err := closeFiles(r.files, runErr)
	err = errors.Join(err, printSummary(r.stderr, r.capt, hookNames(r.capt), r.files))
	r.closeUploads()
	r.closeOutlasting()
	if allGone {
		err = errors.Join(err, capture.ErrNoInterface)
	}
	return err
}

// closeUploads ends the uploads, once: their bounded wait starts, unless
// close started it before the files, then each -z command an upload waits
// for ends, the uploads do, or their wait, and a line says what the store
// got.
func (r *recorder) closeUploads() {
	if r.up == nil || r.uploadsClosed {
		return
	}
	r.uploadsClosed = true
	r.up.drain()
	r.up.finish()
}

// closeOutlasting ends, in this order, the parts that outlast the files:
// signals get their default back; the metrics, served until now so that
// a last scrape sees the summary's figures, stop; the -z commands still
// running (those no upload waits for) end; the capture's programs are
// detached. After a failed open, it ends those that were opened, the
// uploads first, as close does.
func (r *recorder) closeOutlasting() {
	r.closeUploads()
	if r.restoreSignals != nil {
		r.restoreSignals()
	}
	if r.metrics != nil {
		r.metrics.close()
	}
	if r.post != nil {
		r.post.wait()
	}
	if r.capt != nil {
		r.capt.Close()
	}
}

// hookNames names the capture's hooks for the summary: "eth0 inbound".
func hookNames(capt *capture.Capture) []string {
	var names []string
	for _, h := range capt.Hooks() {
		names = append(names, h.Interface+" "+h.Direction.String())
	}
	return names
}

// ringsText is the rings' layout, "2 rings of 4MiB".
func ringsText(capt *capture.Capture) string {
	unit := "rings"
	if capt.Rings() == 1 {
		unit = "ring"
	}
	return fmt.Sprintf("%d %s of %s", capt.Rings(), unit, bpf.FormatSize(uint64(capt.RingSize())))
}
