package main

/*
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

// enter_netns runs before the Go runtime starts any thread. setns()
// moves only the thread that calls it, and a Go program has several
// threads from its start, so this is the one point where it moves the
// whole process; runc's nsexec does the same. ringcap re-executes itself
// with RINGCAP_NETNS set to get here (see enterNetns), and
// RINGCAP_NETNS_PID to its pid, which exec keeps: a variable inherited
// from anywhere else is not acted on.
__attribute__((constructor)) static void ringcap_enter_netns(void)
{
	const char *path = getenv("RINGCAP_NETNS");
	const char *pid = getenv("RINGCAP_NETNS_PID");
	if (!path || !*path || !pid || atol(pid) != (long)getpid())
		return;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
		fprintf(stderr, "ringcap: --netns %s: %m: entering a network namespace needs root (CAP_SYS_ADMIN)\n", path);
		_exit(1);
	}
	close(fd);
}
*/
import "C"

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// The environment of a ringcap re-executed into a network namespace: the
// path the constructor above enters, the name the user gave, and the pid
// of the process meant.
const (
	netnsEnv     = "RINGCAP_NETNS"
	netnsNameEnv = "RINGCAP_NETNS_NAME"
	netnsPIDEnv  = "RINGCAP_NETNS_PID"
)

// netnsEntered is the namespace name this process was executed into, or
// "". Read once, and the variables removed: what ringcap runs (a
// --post-rotate command) must not inherit them.
var netnsEntered = func() string {
	name := ""
	if os.Getenv(netnsPIDEnv) == strconv.Itoa(os.Getpid()) && os.Getenv(netnsEnv) != "" {
		name = os.Getenv(netnsNameEnv)
	}
	for _, v := range []string{netnsEnv, netnsNameEnv, netnsPIDEnv} {
		os.Unsetenv(v)
	}
	return name
}()

func netnsFlag() cli.Flag {
	return &cli.StringFlag{Name: "netns", Usage: "capture in the network namespace `NS`: an ip netns name, or a path such as /proc/PID/ns/net"}
}

// enterNetns makes the rest of the command run in the namespace --netns
// names, by executing ringcap again with the same arguments: it returns
// only on an error, or when there is no namespace to enter, or when
// ringcap already runs in it (then with the name to show).
func enterNetns(c *cli.Context) (name string, err error) {
	ns := c.String("netns")
	if ns == "" {
		return "", nil
	}
	if netnsEntered != "" {
		return netnsEntered, nil
	}
	path := ns
	if !strings.Contains(ns, "/") {
		path = "/run/netns/" + ns
	}
	if err := isNetns(path); err != nil {
		return "", badUsage(c, "--netns %s: %v: `ip netns list` names the namespaces, or give a path such as /proc/PID/ns/net", ns, err)
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("--netns: find ringcap's own binary: %w", err)
	}
	env := append(os.Environ(), netnsEnv+"="+path, netnsNameEnv+"="+ns, netnsPIDEnv+"="+strconv.Itoa(os.Getpid()))
	if err := syscall.Exec(self, os.Args, env); err != nil {
		return "", fmt.Errorf("--netns: run ringcap again: %w", err)
	}
	return "", nil // not reached
}

// isNetns checks that path is a network namespace, so that entering it
// fails only for want of privileges.
func isNetns(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("no network namespace at %s", path)
	}
	defer f.Close()
	kind, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil || kind != unix.CLONE_NEWNET {
		return fmt.Errorf("%s is not a network namespace", path)
	}
	return nil
}
