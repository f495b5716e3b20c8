// Package upload ships a capture's finished files to S3-compatible object
// storage, beside the capture and never in its way: files wait in a queue
// while the store is away, an upload counts only once the store holds the
// file's bytes (its size and whole-file CRC-32 checked), and a file is handed
// back for deletion only then.
//
// It uses the AWS SDK for Go v2 rather than minio-go: the SDK reads
// credentials, region and endpoint from every standard source (the
// environment, AWS_ENDPOINT_URL_S3, the shared config and credentials
// files, web identity and instance roles, as a Kubernetes node or pod has
// them), which minio-go leaves to the caller.
package upload

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/writer"
)

// Target is where files go: s3://Bucket/Prefix.
type Target struct {
	Bucket, Prefix string
}

// ParseURL reads s3://BUCKET[/PREFIX]. Its errors start with s, quoted.
func ParseURL(s string) (Target, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Scheme != "s3":
		return Target{}, fmt.Errorf("%q: give s3://BUCKET/PREFIX (the store's address, if not AWS, goes in AWS_ENDPOINT_URL)", s)
	case u.Host == "":
		return Target{}, fmt.Errorf("%q: no bucket: give s3://BUCKET/PREFIX", s)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.Port() != "":
		return Target{}, fmt.Errorf("%q: give s3://BUCKET/PREFIX, nothing else", s)
	}
	return Target{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/")}, nil
}

func (t Target) String() string {
	if t.Prefix == "" {
		return "s3://" + t.Bucket
	}
	return "s3://" + t.Bucket + "/" + t.Prefix
}

// Key is the object a local file goes to: PREFIX/<its name>.
func (t Target) Key(file string) string { return path.Join(t.Prefix, filepath.Base(file)) }

// Config says where files go and what to do with them there.
type Config struct {
	Target Target
	// Delete removes each local file once the store holds it.
	Delete bool
	// Logf prints one line: a failure, or the store coming back.
	Logf func(format string, args ...any)
	// Backoff bounds the wait between tries; 0 means from 1 second up to
	// 30.
	MinBackoff, MaxBackoff time.Duration
	// PartSize is the size of a multipart upload's parts, and the
	// threshold above which a file goes in parts; 0 means 16 MiB.
	PartSize int64
}

// Stats are what the uploader did so far.
type Stats struct {
	Files    uint64 // files sent
	Bytes    uint64 // their bytes
	Found    uint64 // files an earlier run left that the store held
	Failures uint64 // tries that failed
	Waiting  int    // files not in the store yet
}

// Uploader sends files one at a time, oldest first.
type Uploader struct {
	cfg      Config
	client   *s3.Client
	tm       *transfermanager.Client
	endpoint string // for messages

	ctx    context.Context // uploads; cancelled at the deadline Drain sets
	cancel context.CancelFunc

	mu       sync.Mutex
	queue    []*job
	wake     chan struct{}
	stopping bool          // Wait was called: no more files come
	deadline *time.Timer   // Drain's
	stopped  bool          // Wait has returned: nothing more is sent
	done     chan struct{} // the worker ended
	unsent   []string

	files, bytes, found, failures atomic.Uint64
	waiting                       atomic.Int64
	noChecksums                   sync.Once // the store keeps none: said once
}

type job struct {
	path     string
	leftover bool // from an earlier run: the store may hold it
	// decide gives the Release Deletable once the store holds the file,
	// or once it is gone; Keep if it is not sent.
	decide func(writer.Verdict)
}

// New makes an uploader from the SDK's standard configuration sources. It
// does not talk to the store: ringcap starts whether the store answers or
// not (Check says which).
func New(ctx context.Context, cfg Config) (*Uploader, error) {
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = 16 << 20
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("the AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		// A store of one's own (AWS_ENDPOINT_URL) often has no region,
		// and one is needed to sign requests: AWS's default.
		awsCfg.Region = "us-east-1"
	}
	u := &Uploader{cfg: cfg, wake: make(chan struct{}, 1), done: make(chan struct{}), endpoint: "AWS S3"}
	u.client = s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if o.BaseEndpoint != nil {
			// A custom endpoint is a store at one address, not
			// bucket-named hosts.
			o.UsePathStyle = true
			u.endpoint = *o.BaseEndpoint
		}
	})
	u.tm = transfermanager.New(u.client, func(o *transfermanager.Options) {
		o.PartSizeBytes = cfg.PartSize
		o.MultipartUploadThreshold = cfg.PartSize
		// Parts carry CRC-32s, and the whole file one too
		// (FULL_OBJECT): S3 also has CRC-64/NVME for that, but the
		// transfer manager drops parts' CRC-64s from the request that
		// completes an upload (v0.5.7), which the store then refuses.
		o.ChecksumAlgorithm = tmtypes.ChecksumAlgorithmCrc32
		// Two parts at a time: the capture's disk and CPUs come
		// first.
		o.Concurrency = 2
		// The multipart upload that failed or was cut short at exit is
		// aborted with a context of its own, else its parts would stay
		// in the bucket.
		o.FailTimeout = 5 * time.Second
	})
	u.ctx, u.cancel = context.WithCancel(context.Background())
	go u.work()
	return u, nil
}

// Endpoint names the store, for messages.
func (u *Uploader) Endpoint() string { return u.endpoint }

// Check asks the store for the bucket, within timeout: nil when it
// answers.
func (u *Uploader) Check(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := u.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(u.cfg.Target.Bucket)})
	return describe(err)
}

// Send queues a finished file. It never blocks. The Release lets the
// file go once the store holds it, and keeps it when the uploader stopped
// first.
func (u *Uploader) Send(file string) writer.Release { return u.add(file, false) }

// Resume queues a file an earlier run left behind: unless the store holds
// it already, it is sent like the others.
func (u *Uploader) Resume(file string) writer.Release { return u.add(file, true) }

func (u *Uploader) add(file string, leftover bool) writer.Release {
	release, decide := writer.NewRelease()
	j := &job{path: file, leftover: leftover, decide: decide}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.stopped || u.ctx.Err() != nil {
		u.unsent = append(u.unsent, file)
		j.decide(writer.Keep)
		return release
	}
	u.queue = append(u.queue, j)
	u.waiting.Add(1)
	select {
	case u.wake <- struct{}{}:
	default:
	}
	return release
}

// Stats reads the counters.
func (u *Uploader) Stats() Stats {
	return Stats{Files: u.files.Load(), Bytes: u.bytes.Load(), Found: u.found.Load(), Failures: u.failures.Load(), Waiting: int(u.waiting.Load())}
}

// Drain starts the end: timeout from now, the uploads stop, sent or not.
// Files may still be queued until Wait.
func (u *Uploader) Drain(timeout time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.deadline == nil {
		u.deadline = time.AfterFunc(timeout, u.cancel)
	}
}

// Wait takes no more files, and returns once the queue is empty or
// Drain's timeout has passed, with the files not sent, oldest first, each
// released to be kept.
func (u *Uploader) Wait() (unsent []string) {
	u.mu.Lock()
	u.stopping = true
	u.mu.Unlock()
	select {
	case u.wake <- struct{}{}:
	default:
	}
	<-u.done
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.deadline != nil {
		u.deadline.Stop()
	}
	u.stopped = true
	u.abandon()
	return u.unsent
}

// abandon releases the files queued to be kept: the uploads stopped.
// Called with mu held.
func (u *Uploader) abandon() {
	for _, j := range u.queue {
		u.unsent = append(u.unsent, j.path)
		j.decide(writer.Keep)
	}
	u.queue = nil
	u.waiting.Store(0)
}

// work sends the queue's files one at a time, each until it is in the
// store or the uploader stops. Stopped at Drain's deadline, it releases
// what is left at once: --max-files waits on those files as the last one
// is finished, before Wait.
func (u *Uploader) work() {
	defer close(u.done)
	defer func() {
		u.cancel()
		u.mu.Lock()
		u.abandon()
		u.mu.Unlock()
	}()
	for {
		u.mu.Lock()
		if len(u.queue) == 0 && u.stopping {
			u.mu.Unlock()
			return
		}
		var j *job
		if len(u.queue) > 0 {
			j = u.queue[0]
		}
		u.mu.Unlock()
		if j == nil {
			select {
			case <-u.wake:
			case <-u.ctx.Done():
				return
			}
			continue
		}
		if !u.deliver(j) {
			return // stopped: the deferred abandon gives the queue back
		}
		u.mu.Lock()
		u.queue = u.queue[1:]
		u.mu.Unlock()
		u.waiting.Add(-1)
	}
}

// deliver tries j until the store holds it, waiting longer after each
// failure. It returns false if the uploader stopped first.
func (u *Uploader) deliver(j *job) bool {
	wait := u.cfg.MinBackoff
	failed := false
	for {
		size, sent, err := u.upload(j)
		if err == nil {
			if failed {
				u.cfg.Logf("%s is in %s: the store answers again", filepath.Base(j.path), u.cfg.Target)
			}
			if sent {
				u.files.Add(1)
				u.bytes.Add(uint64(size))
			} else {
				u.found.Add(1)
			}
			j.decide(writer.Deletable)
			return true
		}
		if errors.Is(err, os.ErrNotExist) {
			// Moved away (a --post-rotate command's gzip): nothing
			// is left to send.
			u.cfg.Logf("upload %s: %v: not sent", j.path, err)
			j.decide(writer.Deletable)
			return true
		}
		if errors.Is(err, errNotRegular) {
			// Another file now has the name: not ringcap's to send,
			// nor to delete.
			u.cfg.Logf("upload %s: %v: not sent", j.path, err)
			j.decide(writer.Keep)
			return true
		}
		if u.ctx.Err() != nil {
			return false
		}
		u.failures.Add(1)
		failed = true
		u.cfg.Logf("upload %s to %s: %v; the file is kept, trying again in %v", filepath.Base(j.path), u.cfg.Target, err, wait)
		select {
		case <-time.After(wait):
		case <-u.ctx.Done():
			return false
		}
		wait = min(2*wait, u.cfg.MaxBackoff)
	}
}

// uploadedAttr marks a local file the store holds, with the object and
// checksum: a restart then skips the file without reading it again.
const uploadedAttr = "user.ringcap.uploaded"

// upload sends one file unless the store holds it (an earlier run's),
// and checks that it does afterwards. It returns the file's size, and
// whether it was sent.
func (u *Uploader) upload(j *job) (size int64, sent bool, err error) {
	f, err := openRegular(j.path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, false, err
	}
	size = st.Size()
	key := u.cfg.Target.Key(j.path)
	if j.leftover && marked(f, u.cfg.Target.Bucket, key, size) {
		return size, false, u.deleteLocal(f, j.path)
	}
	sum, err := checksum(f)
	if err != nil {
		return 0, false, fmt.Errorf("read %s: %w", j.path, err)
	}
	if j.leftover && u.holds(key, size, sum) == nil {
		return size, false, u.markStored(f, j.path, key, size, sum)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, false, err
	}
	out, err := u.tm.UploadObject(u.ctx, &transfermanager.UploadObjectInput{
		Bucket: aws.String(u.cfg.Target.Bucket),
		Key:    aws.String(key),
		Body:   f,
		// The store checks the whole file against it before it makes
		// the object.
		ChecksumCRC32: aws.String(sum),
		ChecksumType:  tmtypes.ChecksumTypeFullObject,
		ContentType:   aws.String("application/vnd.tcpdump.pcap"),
	})
	if err != nil {
		return 0, false, describe(err)
	}
	// The store checked the whole file against sum before it made the
	// object, and says so in its answer; without that, ask it (which
	// needs s3:GetObject).
	if aws.ToString(out.ChecksumCRC32) != sum {
		if err := u.holds(key, size, sum); err != nil {
			return 0, false, err
		}
	}
	return size, true, u.markStored(f, j.path, key, size, sum)
}

// markStored marks a file the store holds, and deletes it if asked to.
func (u *Uploader) markStored(f *os.File, file, key string, size int64, sum string) error {
	// A file system without user xattrs only costs the next run a read.
	unix.Fsetxattr(int(f.Fd()), uploadedAttr, []byte(mark(u.cfg.Target.Bucket, key, size, sum)), 0)
	return u.deleteLocal(f, file)
}

// openRegular opens a file to send: a regular file, never through a
// link, so that a name another user swapped for a link to someone else's
// file sends nothing of it.
func openRegular(file string) (*os.File, error) {
	f, err := os.OpenFile(file, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, errNotRegular
	}
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, errNotRegular
	}
	return f, nil
}

// errNotRegular is a name to send that is a link, or no regular file.
var errNotRegular = errors.New("not a regular file")

// deleteLocal removes file, sent from f, if Delete says so and the name
// still is that file.
func (u *Uploader) deleteLocal(f *os.File, file string) error {
	if !u.cfg.Delete {
		return nil
	}
	sent, err1 := f.Stat()
	now, err2 := os.Lstat(file)
	if err1 != nil || err2 != nil || !os.SameFile(sent, now) {
		u.cfg.Logf("delete %s once sent: the name is no longer the file sent: it stays", file)
		return nil
	}
	if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
		// In the store already: counted as sent, and said.
		u.cfg.Logf("delete %s once sent: %v: the file stays", file, err)
	}
	return nil
}

func mark(bucket, key string, size int64, sum string) string {
	return fmt.Sprintf("s3://%s/%s %d crc32:%s", bucket, key, size, sum)
}

// SettleStored settles a file an earlier run left if it carries the mark
// of a verified upload to this uploader's target, with the size it has
// now: the store holds it, and it need not be read to know. Such a file
// counts as found, is deleted if Delete says so, and SettleStored returns
// true; otherwise it returns false, and the file is to be sent (Resume).
func (u *Uploader) SettleStored(file string) bool {
	f, err := openRegular(file)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !marked(f, u.cfg.Target.Bucket, u.cfg.Target.Key(file), st.Size()) {
		return false
	}
	u.found.Add(1)
	u.deleteLocal(f, file)
	return true
}

func marked(f *os.File, bucket, key string, size int64) bool {
	buf := make([]byte, 2048)
	n, err := unix.Fgetxattr(int(f.Fd()), uploadedAttr, buf)
	if err != nil {
		return false
	}
	have := string(buf[:n])
	prefix := fmt.Sprintf("s3://%s/%s %d crc32:", bucket, key, size)
	return strings.HasPrefix(have, prefix)
}

// holds checks that the store has key with the file's size and checksum.
func (u *Uploader) holds(key string, size int64, sum string) error {
	head, err := u.client.HeadObject(u.ctx, &s3.HeadObjectInput{
		Bucket: aws.String(u.cfg.Target.Bucket), Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return fmt.Errorf("check the object: %w", describe(err))
	}
	if got := aws.ToInt64(head.ContentLength); got != size {
		return fmt.Errorf("the store holds %d bytes of %s, the file %d", got, key, size)
	}
	got := aws.ToString(head.ChecksumCRC32)
	other := aws.ToString(head.ChecksumCRC64NVME) + aws.ToString(head.ChecksumCRC32C) +
		aws.ToString(head.ChecksumSHA1) + aws.ToString(head.ChecksumSHA256) + string(head.ChecksumType)
	if got == "" && other == "" {
		// A store that keeps no checksums (older MinIO or Ceph): the
		// size is all there is to check.
		u.noChecksums.Do(func() {
			u.cfg.Logf("the store keeps no checksums: files are checked by their size only")
		})
		return nil
	}
	if got != sum {
		return fmt.Errorf("the store's CRC-32 of %s is %q (%s), the file's %q", key, got, head.ChecksumType, sum)
	}
	return nil
}

// checksum returns the file's CRC-32 as S3 writes it: base64 of the
// big-endian value.
func checksum(r io.Reader) (string, error) {
	h := crc32.NewIEEE()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}

// describe shortens the SDK's errors to what a user acts on: the store's
// error code and message, or the network's.
func describe(err error) error {
	if err == nil {
		return nil
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		if msg := api.ErrorMessage(); msg != "" {
			return fmt.Errorf("%s: %s", api.ErrorCode(), msg)
		}
		return errors.New(api.ErrorCode())
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return fmt.Errorf("the store does not answer: %v", op)
	}
	return err
}
