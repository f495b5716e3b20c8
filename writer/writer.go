// Package writer turns captured frames into pcapng files.
package writer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Interface describes one capture interface in the file's Interface
// Description Block.
type Interface struct {
	Name        string // if_name
	Description string // if_description, e.g. the XDP mode
	Filter      string // if_filter: what was selected
	SnapLen     uint32
}

// Options describe the file.
type Options struct {
	// Application names the program and its version in the Section
	// Header Block (shb_userappl).
	Application string
	Interfaces  []Interface
}

// Writer writes one pcapng section: a Section Header Block, one Interface
// Description Block per interface, then an Enhanced Packet Block per frame.
// Frames are buffered; Flush writes them out.
type Writer struct {
	ng   *pcapgo.NgWriter
	out  *countingWriter
	opts pcapgo.NgPacketOptions
}

// New writes the file's header blocks to w.
func New(w io.Writer, opts Options) (*Writer, error) {
	if len(opts.Interfaces) == 0 {
		return nil, errors.New("pcapng: no interface")
	}
	out := &countingWriter{w: w}
	section := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Hardware:    runtime.GOARCH,
		OS:          runtime.GOOS,
		Application: opts.Application,
	}}
	ifaces := make([]pcapgo.NgInterface, len(opts.Interfaces))
	for i, ifc := range opts.Interfaces {
		ifaces[i] = pcapgo.NgInterface{
			Name:        ifc.Name,
			Description: ifc.Description,
			Filter:      ifc.Filter,
			OS:          runtime.GOOS,
			LinkType:    layers.LinkTypeEthernet,
			SnapLength:  ifc.SnapLen,
			// pcapgo always writes if_tsresol 9: nanoseconds.
			TimestampResolution: 9,
		}
	}
	ng, err := pcapgo.NewNgWriterInterface(out, ifaces[0], section)
	if err != nil {
		return nil, fmt.Errorf("pcapng: write header: %w", err)
	}
	for _, ifc := range ifaces[1:] {
		if _, err := ng.AddInterface(ifc); err != nil {
			return nil, fmt.Errorf("pcapng: write interface %s: %w", ifc.Name, err)
		}
	}
	return &Writer{
		ng:  ng,
		out: out,
		// XDP only sees received frames.
		opts: pcapgo.NgPacketOptions{Flags: &pcapgo.NgEpbFlags{Direction: pcapgo.NgEpbFlagDirectionInbound}},
	}, nil
}

// WritePacket appends one Enhanced Packet Block: the frame's first bytes,
// its original length, its time and the inbound direction flag. iface is
// the position of the frame's interface in Options.Interfaces.
func (w *Writer) WritePacket(iface int, ts time.Time, length int, data []byte) error {
	ci := gopacket.CaptureInfo{
		Timestamp:      ts,
		CaptureLength:  len(data),
		Length:         length,
		InterfaceIndex: iface,
	}
	if err := w.ng.WritePacketWithOptions(ci, data, w.opts); err != nil {
		return fmt.Errorf("pcapng: write packet: %w", err)
	}
	return nil
}

// Flush writes the buffered blocks out.
func (w *Writer) Flush() error {
	if err := w.ng.Flush(); err != nil {
		return fmt.Errorf("pcapng: %w", err)
	}
	return nil
}

// Bytes returns the number of bytes flushed so far; safe to call from any
// goroutine.
func (w *Writer) Bytes() uint64 { return w.out.n.Load() }

type countingWriter struct {
	w io.Writer
	n atomic.Uint64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(uint64(n))
	return n, err
}

// CheckNew fails when path exists and overwrite is not set, so that a
// capture can refuse before it starts rather than when it has frames.
func CheckNew(path string, overwrite bool) error {
	if path == "-" || overwrite {
		return nil
	}
	if _, err := os.Lstat(path); err == nil {
		return existError(path)
	}
	return nil
}

func existError(path string) error {
	return fmt.Errorf("output file %s exists: use --force to overwrite it", path)
}

// Create opens path for a new capture: standard output for "-"; otherwise
// a new file with mode 0600 (captures hold other people's data), which
// must not exist unless overwrite is set.
func Create(path string, overwrite bool) (io.WriteCloser, error) {
	if path == "-" {
		return nopCloser{os.Stdout}, nil
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if overwrite {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, existError(path)
	}
	if err != nil {
		return nil, fmt.Errorf("create output file: %w", err)
	}
	return f, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
