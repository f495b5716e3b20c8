package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// versionLine says the version, the Go version and the commit ringcap was
// built from, as the Go toolchain stamped it into the binary.
func versionLine() string {
	line := fmt.Sprintf("ringcap %s, %s", version, runtime.Version())
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return line
	}
	var revision, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", with changes not committed"
			}
		}
	}
	if revision == "" {
		return line + ", commit unknown (not built from a git checkout)"
	}
	return line + ", commit " + revision + modified
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, the Go version and the commit ringcap was built from",
		Action: func(c *cli.Context) error {
			cli.VersionPrinter(c)
			return nil
		},
	}
}
