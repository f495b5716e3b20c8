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
// with RINGCAP_NETNS set to get here (see enterNetns).
__attribute__((constructor)) static void ringcap_enter_netns(void)
{
	const char *path = getenv("RINGCAP_NETNS");
	if (!path || !*path)
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
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
)

// The environment of a ringcap re-executed into a network namespace: the
// path the constructor above enters, and the name the user gave.
const (
	netnsEnv     = "RINGCAP_NETNS"
	netnsNameEnv = "RINGCAP_NETNS_NAME"
)

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
	if os.Getenv(netnsEnv) != "" {
		// Entered: what this process hands to others stays in it.
		name = os.Getenv(netnsNameEnv)
		os.Unsetenv(netnsEnv)
		os.Unsetenv(netnsNameEnv)
		return name, nil
	}
	path := ns
	if !strings.Contains(ns, "/") {
		path = "/run/netns/" + ns
	}
	if st, err := os.Stat(path); err != nil || st.IsDir() {
		return "", badUsage(c, "--netns %s: no network namespace at %s: `ip netns list` names them, or give a path such as /proc/PID/ns/net", ns, path)
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("--netns: find ringcap's own binary: %w", err)
	}
	env := append(os.Environ(), netnsEnv+"="+path, netnsNameEnv+"="+ns)
	if err := syscall.Exec(self, os.Args, env); err != nil {
		return "", fmt.Errorf("--netns: run ringcap again: %w", err)
	}
	return "", nil // not reached
}
