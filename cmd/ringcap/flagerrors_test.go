package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"testing"

	"github.com/ringcap/ringcap/capture"
	"github.com/ringcap/ringcap/writer"
)

// ringcap prints capture's attach errors with the options that get round
// them, wherever they sit in the error, and the error still unwraps to
// capture's.
func TestFlagsInCaptureErrors(t *testing.T) {
	lo := capture.Hook{Interface: "lo", Index: 1}
	refused := &capture.NativeRefusedError{Hook: lo, Why: "its driver offers no native XDP here"}
	asked := &capture.NativeRefusedError{Hook: lo, Err: errors.New("attach lo in native mode: refused (operation not supported)"), XDPAsked: true}
	egress := lo
	egress.Direction = capture.Outbound
	behind := lo
	behind.Behind = "other (id 7)"
	busy := &capture.XDPBusyError{Hook: lo, Mode: capture.ModeNative}
	plain := errors.New("attach lo: no slot left")
	tests := []struct {
		err  error
		want string
	}{
		{refused, "attach lo in native mode: its driver offers no native XDP here: --hook tc captures its received frames at tcx ingress instead"},
		{asked, "attach lo in native mode: refused (operation not supported): --hook tc captures its received frames at tcx ingress instead, --mode generic in generic XDP"},
		{&capture.NoTCXError{Hook: lo}, "attach lo tcx ingress: this kernel has no tcx links, which ringcap's tc hooks need: capture inbound frames at XDP with -Q in --hook xdp, or run Linux 6.6 or later"},
		{&capture.NoTCXError{Hook: egress}, "attach lo tcx egress: this kernel has no tcx links, which ringcap's tc hooks need: sent frames need Linux 6.6 or later; -Q in --hook xdp captures the received ones"},
		{&capture.NoTCXError{Hook: behind}, "attach lo tcx ingress: this kernel has no tcx links, which ringcap's tc hooks need: run Linux 6.6 or later, or capture where no other XDP program runs"},
		{busy, "attach lo in native mode: the interface already has an XDP program; `ip link show lo` names it, and --hook tc captures beside it"},
		{plain, "attach lo: no slot left"},
		{fmt.Errorf("no interface took ringcap's program: %w", errors.Join(busy, plain, busy)),
			"no interface took ringcap's program: attach lo in native mode: the interface already has an XDP program; `ip link show lo` names it, and --hook tc captures beside it\n" +
				"attach lo: no slot left\n" +
				"attach lo in native mode: the interface already has an XDP program; `ip link show lo` names it, and --hook tc captures beside it"},
	}
	for _, tt := range tests {
		err := withFlags(tt.err)
		if got := err.Error(); got != tt.want {
			t.Errorf("%q:\n got %q\nwant %q", tt.err, got, tt.want)
		}
		if !errors.Is(err, tt.err) {
			t.Errorf("%q does not unwrap to capture's error", err)
		}
	}
	if err := withFlags(nil); err != nil {
		t.Errorf("no error became %v", err)
	}
}

// The writer's errors, which describe the condition, come out of ringcap
// as lines that name the flag to change; errors joined are named each,
// and errors of other kinds pass as they are.
func TestFlagsInWriterErrors(t *testing.T) {
	const p = "/captures/big.pcapng"
	newName := "give a new file name, or -w - for standard output"
	refused := fmt.Errorf("%s: write %s: %w: %w", p, p, syscall.EINVAL, writer.ErrDirectRefused)
	deleteErr := &writer.DeleteError{Path: p, Err: &os.PathError{Op: "remove", Path: p, Err: syscall.EACCES}}
	deleteLine := "delete the oldest file for --max-files: remove " + p + ": permission denied"
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&writer.ExistError{Path: p}, "output file " + p + " exists: use --force to overwrite it"},
		{&writer.NotRegularError{Path: p, Mode: fs.ModeSymlink | 0o777},
			"-w " + p + " is a symbolic link, not a regular file: give a new file name (ringcap does not write through links), or -w - for standard output"},
		{&writer.NotRegularError{Path: p, Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666}, "-w " + p + " is a device, not a regular file: " + newName},
		{&writer.NotRegularError{Path: p, Mode: fs.ModeNamedPipe | 0o666},
			"-w " + p + " is a named pipe, not a regular file: give a new file name, or -w - with standard output sent into the pipe"},
		{&writer.NotRegularError{Path: p, Mode: fs.ModeSocket | 0o666}, "-w " + p + " is a socket, not a regular file: " + newName},
		{&writer.NotRegularError{Path: p, Mode: fs.ModeDir | 0o755},
			"-w " + p + " is a directory, not a regular file: give a file name in it, such as " + p + "/capture.pcapng"},
		{&writer.DirError{Path: "/nodir/x", Dir: "/nodir", Missing: true},
			"-w /nodir/x: there is no directory /nodir: create it first (mkdir -p /nodir), or give a file in one that exists"},
		{&writer.DirError{Path: "/file/x", Dir: "/file"}, "-w /file/x: /file is not a directory: give a file in a directory"},
		{writer.ErrMaxFilesWithoutRotation, "--max-files needs a rotation: --rotate-size, --rotate-every or --rotate-packets"},
		{&writer.TakenError{Taken: 1001, Last: p},
			"create output file: 1001 names in a row are taken, up to " + p + ": give -w a directory only ringcap's user can write to"},
		{deleteErr, deleteLine},
		{errors.Join(errors.New("write failed"), errors.Join(deleteErr, deleteErr)), "write failed\n" + deleteLine + "\n" + deleteLine},
		{refused, p + ": write " + p + ": invalid argument: the file system refused a direct write; --buffered writes through the page cache"},
		{errors.New("no space left on device"), "no space left on device"},
	} {
		got := withFlags(tc.err)
		if got == nil || got.Error() != tc.want {
			t.Errorf("%v:\ngot  %v\nwant %s", tc.err, got, tc.want)
			continue
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("%v: the error named is no longer the writer's", tc.err)
		}
	}
	if err := withFlags(errors.Join(io.EOF, deleteErr)); !errors.Is(err, deleteErr) || !errors.Is(err, io.EOF) {
		t.Errorf("errors joined, named: %v is no longer what was joined", err)
	}
	if err := withFlags(nil); err != nil {
		t.Errorf("nil: %v", err)
	}
}

// A hook's notes come out of ringcap with the option that changes what
// they say, where one does; the others as capture words them.
func TestNoteText(t *testing.T) {
	tests := []struct {
		note capture.Note
		want string
	}{
		{capture.Note{Text: "VLAN tags the driver takes out of frames may be missing", Unless: capture.SettingHookTC},
			"VLAN tags the driver takes out of frames may be missing (--hook tc keeps them)"},
		{capture.Note{Text: "on veth, tcx ingress costs less than XDP", Unless: capture.SettingModeNative},
			"on veth, tcx ingress costs less than XDP: --mode native attaches XDP"},
		{capture.Note{Text: "its driver offers no native XDP here"}, "its driver offers no native XDP here"},
	}
	for _, tt := range tests {
		if got := noteText(tt.note); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.note, got, tt.want)
		}
	}
}
