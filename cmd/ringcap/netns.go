package main

/*
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// What ringcap_enter_netns did: the namespace file the command line's
// --netns names (NULL: none), and the errno of opening or entering it
// (0: entered).
static char *netns_path;
static int netns_errno;

static const char *entered_netns_path(void) { return netns_path; }
static int entered_netns_errno(void) { return netns_errno; }

// read_cmdline returns the process's arguments, each ended by a NUL, as
// the kernel keeps them; NULL where they cannot be read.
static char *read_cmdline(size_t *len)
{
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t size = 4096, n = 0;
	char *buf = malloc(size + 1);
	while (buf) {
		ssize_t r = read(fd, buf + n, size - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += r;
		if (n == size) {
			char *more = realloc(buf, 2 * size + 1);
			if (!more)
				free(buf);
			buf = more;
			size *= 2;
		}
	}
	close(fd);
	if (buf)
		buf[n] = '\0';
	*len = n;
	return buf;
}

// netns_arg returns the value of the last --netns (or -netns, or
// --netns=VALUE) among the arguments of ringcap record or ringcap
// interfaces, up to a "--"; NULL if there is none. The Go side checks
// that it is the value urfave/cli reads.
static const char *netns_arg(const char *args, size_t len)
{
	const char *end = args + len, *value = NULL;
	const char *arg = args;
	for (int i = 0; arg < end; i++, arg += strlen(arg) + 1) {
		const char *next = arg + strlen(arg) + 1;
		if (i == 1 && strcmp(arg, "record") != 0 && strcmp(arg, "interfaces") != 0)
			return NULL;
		if (i < 2)
			continue;
		if (strcmp(arg, "--") == 0)
			break;
		const char *name = arg[0] == '-' && arg[1] == '-' ? arg + 2 : arg[0] == '-' ? arg + 1 : NULL;
		if (!name || strncmp(name, "netns", 5) != 0)
			continue;
		if (name[5] == '=')
			value = name + 6;
		else if (name[5] == '\0' && next < end)
			value = next;
	}
	return value;
}

// ringcap_enter_netns runs before the Go runtime starts any thread.
// setns() moves only the thread that calls it, and a Go program has
// several threads from its start, so this is the one point where it
// moves the whole process; runc's nsexec does the same. It reads the
// namespace from the command line's --netns, and from nothing else: no
// variable a caller could set makes ringcap enter a namespace the
// command line does not name.
__attribute__((constructor)) static void ringcap_enter_netns(void)
{
	size_t len;
	char *args = read_cmdline(&len);
	if (!args)
		return;
	const char *ns = netns_arg(args, len);
	if (ns && *ns) {
		size_t size = strlen("/run/netns/") + strlen(ns) + 1;
		netns_path = malloc(size);
		if (netns_path) {
			// As ip netns names them, or a path.
			strcpy(netns_path, strchr(ns, '/') ? "" : "/run/netns/");
			strcat(netns_path, ns);
			int fd = open(netns_path, O_RDONLY | O_CLOEXEC);
			if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
				netns_errno = errno;
			if (fd >= 0)
				close(fd);
		}
	}
	free(args);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

func netnsFlag() cli.Flag {
	return &cli.StringFlag{Name: "netns", Usage: "capture in the network namespace `NS`: an ip netns name, or a path such as /proc/PID/ns/net"}
}

// netnsPath is the file of the namespace --netns names, as ringcap_enter_netns
// finds it.
func netnsPath(ns string) string {
	if strings.Contains(ns, "/") {
		return ns
	}
	return "/run/netns/" + ns
}

// checkNetns checks that ringcap runs in the namespace --netns names,
// which ringcap_enter_netns entered before Go started, and returns the
// name to show; "" without --netns.
func checkNetns(c *cli.Context) (name string, err error) {
	ns := c.String("netns")
	var tried string // by ringcap_enter_netns
	if p := C.entered_netns_path(); p != nil {
		tried = C.GoString(p)
	}
	enterErr := syscall.Errno(C.entered_netns_errno())
	if ns == "" {
		if tried != "" && enterErr == 0 {
			// The constructor read a --netns where urfave/cli reads
			// none (the value of another flag, say).
			return "", badUsage(c, "--netns: ringcap entered %s, which no --netns option names: give it as --netns NS", tried)
		}
		return "", nil
	}
	path := netnsPath(ns)
	if err := isNetns(path); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return "", fmt.Errorf("--netns %s: %v: entering another network namespace needs root (CAP_SYS_ADMIN)", ns, err)
		}
		return "", badUsage(c, "--netns %s: %v: `ip netns list` names the namespaces, or give a path such as /proc/PID/ns/net", ns, err)
	}
	in, err := sameFile(path, "/proc/self/ns/net")
	switch {
	case err != nil:
		return "", fmt.Errorf("--netns %s: %w", ns, err)
	case in:
		return ns, nil
	case tried == path && enterErr != 0:
		return "", fmt.Errorf("--netns %s: %v: entering a network namespace needs root (CAP_SYS_ADMIN)", ns, enterErr)
	}
	return "", badUsage(c, "--netns %s: ringcap runs in another network namespace, having read --netns differently from its command line: give it once, as --netns NS", ns)
}

// isNetns checks that path is a network namespace that can be opened, so
// that entering it fails only for want of privileges.
func isNetns(path string) error {
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("no network namespace at %s", path)
	case err != nil:
		return fmt.Errorf("cannot open %s: %w", path, errors.Unwrap(err))
	}
	defer f.Close()
	kind, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil || kind != unix.CLONE_NEWNET {
		return fmt.Errorf("%s is not a network namespace", path)
	}
	return nil
}

// sameFile says whether two paths name the same file (a namespace's,
// for /proc/self/ns/net), by device and inode.
func sameFile(a, b string) (bool, error) {
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		return false, fmt.Errorf("stat %s: %w", a, err)
	}
	if err := unix.Stat(b, &sb); err != nil {
		return false, fmt.Errorf("stat %s: %w", b, err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino, nil
}
