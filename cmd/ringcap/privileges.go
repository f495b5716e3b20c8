package main

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/cap"
)

// What ringcap holds once its programs are attached: the user -Z names,
// and only the capabilities the capture still uses.
//
// Linux keeps credentials per thread, and the Go runtime runs goroutines
// on any of its threads. glibc's setuid(2) reaches every thread, but
// nothing does for capset(2) or prctl(2), and syscall.AllThreadsSyscall
// refuses to run in a program built with cgo, as ringcap is (libpcap).
// libcap's psx package makes each call on every thread of the process, Go's
// and C's, which is why the changes go through libcap's cap package.

func relinquishFlag() cli.Flag {
	return &cli.StringFlag{Name: "relinquish-privileges", Aliases: []string{"Z"},
		Usage: "once the programs are attached, run as `USER` (its uid, group and supplementary groups), as tcpdump's -Z: " +
			"files are created, -z commands run and uploads go as USER, with no capability but those -i any needs"}
}

// account is a user of the user database, as initgroups(3) and setuid(2)
// take it.
type account struct {
	name     string
	uid, gid int
	groups   []int // the supplementary groups, the primary one among them
}

func lookupAccount(name string) (*account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	a := &account{name: u.Username}
	var errs [2]error
	a.uid, errs[0] = strconv.Atoi(u.Uid)
	a.gid, errs[1] = strconv.Atoi(u.Gid)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("the user database gives %s uid %q, gid %q: %w", name, u.Uid, u.Gid, err)
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("the groups of %s: %w", name, err)
	}
	for _, id := range ids {
		gid, err := strconv.Atoi(id)
		if err != nil {
			return nil, fmt.Errorf("the user database gives %s group %q: %w", name, id, err)
		}
		a.groups = append(a.groups, gid)
	}
	return a, nil
}

// current says whether ringcap already runs as a, so that it keeps its
// groups and needs no privilege to stay a.
func (a *account) current() bool {
	return os.Getuid() == a.uid && os.Geteuid() == a.uid && os.Getgid() == a.gid && os.Getegid() == a.gid
}

// privileges is what ringcap becomes once its programs are attached.
type privileges struct {
	user *account // -Z; nil: the user ringcap was started as
	// trim gives up every capability the capture no longer uses, the
	// bounding and ambient sets included.
	trim bool
	// attaching: interfaces that appear later are attached too (-i
	// any), which needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON.
	attaching bool
}

// planPrivileges reads -Z before anything is attached: an unknown user,
// or one ringcap may not become, stops it there.
func planPrivileges(c *cli.Context, attaching bool) (privileges, error) {
	p := privileges{attaching: attaching}
	name := c.String("relinquish-privileges")
	if name == "" {
		// As root, ringcap stays what it was started as, as tcpdump
		// does without -Z: root writes files through its capabilities
		// (CAP_DAC_OVERRIDE, CAP_FOWNER), and -z commands may count on
		// them. Started as another user, ringcap was given its
		// capabilities for the programs alone.
		p.trim = os.Geteuid() != 0
		return p, nil
	}
	a, err := lookupAccount(name)
	if errors.As(err, new(user.UnknownUserError)) {
		if _, err := strconv.Atoi(name); err == nil {
			return p, badUsage(c, "-Z %s: no user is named %s: give a user's name, not a uid, as tcpdump's -Z takes it", name, name)
		}
		return p, badUsage(c, "-Z %s: no such user: name one from the user database (getent passwd), as tcpdump's -Z takes it", name)
	}
	if err != nil {
		return p, fmt.Errorf("-Z %s: %w", name, err)
	}
	if !a.current() && !permitted(cap.GetProc(), cap.SETUID, cap.SETGID) {
		return p, fmt.Errorf("-Z %s: ringcap runs as uid %d and may not become %s (uid %d) without CAP_SETUID and CAP_SETGID: run it as root, or leave -Z out",
			name, os.Geteuid(), name, a.uid)
	}
	if a.uid == 0 && os.Geteuid() == 0 {
		return p, nil // -Z root: ringcap stays root, as tcpdump does
	}
	p.user, p.trim = a, true
	return p, nil
}

// drop makes ringcap the user -Z names, if any, with the capabilities it
// still uses and no others, on every thread. readMaps reads the programs' maps,
// which the status line, the metrics and each file's statistics do:
// before Linux 6.5, a kernel with unprivileged BPF disabled refuses that
// without CAP_BPF, which ringcap then keeps.
func (p privileges) drop(readMaps func() error) error {
	if !p.trim {
		return nil
	}
	held := cap.GetProc()
	keep := p.needed(held)
	// Dropping from the bounding set takes CAP_SETPCAP. Without it
	// (a service started with a few ambient capabilities), the bounding
	// set stays as the service manager left it.
	if permitted(held, cap.SETPCAP) {
		if err := emptyBounding(held); err != nil {
			return fmt.Errorf("drop the capability bounding set: %w", err)
		}
	}
	// Ambient capabilities would pass to -z commands.
	if err := cap.ResetAmbient(); err != nil {
		return fmt.Errorf("clear the ambient capabilities: %w", err)
	}
	if a := p.user; a != nil && !a.current() {
		if err := cap.SetGroups(a.gid, a.groups...); err != nil {
			return fmt.Errorf("-Z %s: set groups %d and %v: %w", a.name, a.gid, a.groups, err)
		}
		if err := cap.SetUID(a.uid); err != nil {
			return fmt.Errorf("-Z %s: set uid %d: %w", a.name, a.uid, err)
		}
	}
	if bpf, ok := standIn(held, cap.BPF); ok && !slices.Contains(keep, bpf) {
		if err := setCapabilities(keep, bpf); err != nil {
			return err
		}
		if err := readMaps(); errors.Is(err, unix.EPERM) {
			keep = append(keep, bpf)
		}
	}
	return setCapabilities(keep)
}

// needed returns the capabilities the capture uses once attached, of
// those held: none, unless it attaches interfaces that appear later.
func (p privileges) needed(held *cap.Set) []cap.Value {
	if !p.attaching {
		return nil
	}
	var keep []cap.Value
	for _, c := range []cap.Value{cap.BPF, cap.NET_ADMIN, cap.PERFMON} {
		if v, ok := standIn(held, c); ok && !slices.Contains(keep, v) {
			keep = append(keep, v)
		}
	}
	return keep
}

// standIn returns c if it is effective in held, or else CAP_SYS_ADMIN
// where that takes its place, as the kernel and the capture take it:
// CAP_BPF and CAP_PERFMON were split from it in Linux 5.8.
func standIn(held *cap.Set, c cap.Value) (cap.Value, bool) {
	if effective(held, c) {
		return c, true
	}
	if (c == cap.BPF || c == cap.PERFMON) && effective(held, cap.SYS_ADMIN) {
		return cap.SYS_ADMIN, true
	}
	return 0, false
}

func permitted(s *cap.Set, cs ...cap.Value) bool { return all(s, cap.Permitted, cs) }
func effective(s *cap.Set, cs ...cap.Value) bool { return all(s, cap.Effective, cs) }

func all(s *cap.Set, flag cap.Flag, cs []cap.Value) bool {
	for _, c := range cs {
		if on, err := s.GetFlag(flag, c); err != nil || !on {
			return false
		}
	}
	return true
}

// emptyBounding drops every capability from the bounding set, so that
// nothing ringcap runs gains one, not even from a file's capabilities.
// ringcap itself runs nothing that needs one.
func emptyBounding(held *cap.Set) error {
	raised, err := held.Dup()
	if err != nil {
		return err
	}
	if err := raised.SetFlag(cap.Effective, true, cap.SETPCAP); err != nil {
		return err
	}
	if err := raised.SetProc(); err != nil {
		return err
	}
	every := make([]cap.Value, cap.MaxBits())
	for i := range every {
		every[i] = cap.Value(i)
	}
	return cap.DropBound(every...)
}

// setCapabilities leaves ringcap the capabilities in use, permitted and
// effective, those in reserve only permitted, and no others.
func setCapabilities(use []cap.Value, reserve ...cap.Value) error {
	s := cap.NewSet()
	err := s.SetFlag(cap.Permitted, true, append(slices.Clone(use), reserve...)...)
	if err == nil {
		err = s.SetFlag(cap.Effective, true, use...)
	}
	if err == nil {
		err = s.SetProc()
	}
	if err != nil {
		return fmt.Errorf("set capabilities %v: %w", use, err)
	}
	return nil
}

// checkOutputDir says, once ringcap runs as the user -Z names, whether
// that user may create files where -w puts them: a directory it may not
// write in is one line naming the fix, not an error at the first file.
func (p privileges) checkOutputDir(path string) error {
	if p.user == nil || path == "" || path == "-" {
		return nil
	}
	dir := filepath.Dir(path)
	// access(2) answers for the real uid, which is the user's now.
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); errors.Is(err, unix.EACCES) {
		return usagef("record: -Z %s: %s may not create files in %s: give -w a directory %s may write in, or let it (chown %s %s)",
			p.user.name, p.user.name, dir, p.user.name, p.user.name, dir)
	}
	return nil
}
