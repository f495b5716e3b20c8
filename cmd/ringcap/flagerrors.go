package main

import (
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/capture"
	"github.com/ringcap/ringcap/writer"
)

// withFlags is err in ringcap's words. The library packages' errors say
// what went wrong; ringcap adds which of its options changes it, to each
// such error's message wherever it sits in err's, so that the line it
// prints names the fix. The result unwraps to err.
//
// The message is rewritten, not rebuilt: the words the wrappers between
// err and a library error add (fmt.Errorf's, errors.Join's) are in err's
// message only, so each library error's own message is replaced where it
// stands in it. A wrapper that repeated a library error's message in
// words of its own would get the option twice; none does.
func withFlags(err error) error {
	if err == nil {
		return nil
	}
	text := err.Error()
	// Each message once: an error joined from several may hold the same
	// one twice, which one replacement fixes everywhere.
	var seen []string
	walkErrors(err, func(e error) {
		msg := e.Error()
		if worded, ok := inFlagWords(e); ok && !slices.Contains(seen, msg) {
			seen = append(seen, msg)
			text = strings.ReplaceAll(text, msg, worded)
		}
	})
	if len(seen) == 0 {
		return err
	}
	return &flagWordedError{err: err, text: text}
}

// inFlagWords is the message of a library error whose fix is one of
// ringcap's options, with that option in it.
func inFlagWords(err error) (string, bool) {
	msg := err.Error()
	switch e := err.(type) {
	case *bpf.RingSizeError:
		if e.TooLarge() {
			return msg + ": give --ring-size " + bpf.FormatSize(e.Bound()) + " or less, or more --rings", true
		}
		if e.Rings == 1 {
			return msg + ": give --ring-size " + bpf.FormatSize(e.Bound()) + " or more", true
		}
		return msg + ": give --ring-size " + bpf.FormatSize(e.Bound()) + " or more, or fewer --rings", true
	case *bpf.InterfaceKeywordError:
		return msg + "; choose interfaces with -i", true
	case *capture.NativeRefusedError:
		fix := ": --hook tc captures its received frames at tcx ingress instead"
		if e.XDPAsked {
			fix += ", --mode generic in generic XDP"
		}
		return msg + fix, true
	case *capture.NoTCXError:
		switch {
		case e.Hook.Direction == capture.Outbound:
			return msg + ": sent frames need Linux 6.6 or later; -Q in --hook xdp captures the received ones", true
		case e.Hook.Behind != "":
			return msg + ": run Linux 6.6 or later, or capture where no other XDP program runs", true
		}
		return msg + ": capture inbound frames at XDP with -Q in --hook xdp, or run Linux 6.6 or later", true
	case *capture.XDPBusyError:
		return msg + ", and --hook tc captures beside it", true
	case *writer.ExistError:
		return msg + ": use --force to overwrite it", true
	case *writer.NotRegularError:
		return "-w " + msg + ": " + notRegularFix(e), true
	case *writer.DirError:
		return "-w " + msg, true
	case *writer.TakenError:
		return msg + ": give -w a directory only ringcap's user can write to", true
	case *writer.DeleteError:
		return "delete the oldest file for --max-files: " + e.Err.Error(), true
	case *writer.CompressError:
		return "--compress: " + msg, true
	}
	switch err {
	case writer.ErrMaxFilesWithoutRotation:
		return "--max-files needs a rotation: --rotate-size, --rotate-every or --rotate-packets", true
	case writer.ErrDirectRefused:
		return msg + "; --buffered writes through the page cache", true
	case writer.ErrCompressStdout:
		return "--compress compresses finished files, and standard output never is one: pipe it into a compressor instead (-w - | zstd -o FILE.pcapng.zst)", true
	}
	return "", false
}

// notRegularFix says what to give -w instead of what is there.
func notRegularFix(e *writer.NotRegularError) string {
	switch {
	case e.Mode.IsDir():
		return "give a file name in it, such as " + filepath.Join(e.Path, "capture.pcapng")
	case e.Mode&fs.ModeSymlink != 0:
		return "give a new file name (ringcap does not write through links), or -w - for standard output"
	case e.Mode&fs.ModeNamedPipe != 0:
		return "give a new file name, or -w - with standard output sent into the pipe"
	}
	return "give a new file name, or -w - for standard output"
}

// noteText is a hook's note in ringcap's words: with the option that
// changes what it says, if one does.
func noteText(n capture.Note) string {
	switch n.Unless {
	case capture.SettingHookTC:
		return n.Text + " (--hook tc keeps them)"
	case capture.SettingModeNative:
		return n.Text + ": --mode native attaches XDP"
	}
	return n.Text
}

// walkErrors calls visit with err and every error it wraps, depth first.
func walkErrors(err error, visit func(error)) {
	visit(err)
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			walkErrors(e, visit)
		}
	case interface{ Unwrap() error }:
		if e := u.Unwrap(); e != nil {
			walkErrors(e, visit)
		}
	}
}

// flagWordedError is an error whose message names ringcap's options.
type flagWordedError struct {
	err  error
	text string
}

func (e *flagWordedError) Error() string { return e.text }
func (e *flagWordedError) Unwrap() error { return e.err }
