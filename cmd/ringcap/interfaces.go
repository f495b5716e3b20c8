package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/ringcap/ringcap/capture"
)

func interfacesCommand() *cli.Command {
	return &cli.Command{
		Name:      "interfaces",
		Usage:     "list the interfaces ringcap can capture on, and how it would (also -D, as tcpdump's)",
		UsageText: "ringcap interfaces [--netns NS]",
		Flags:     []cli.Flag{netnsFlag()},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("interfaces takes no arguments (%q)", c.Args().First())
			}
			if err := checkFlagValues(c); err != nil {
				return err
			}
			if _, err := checkNetns(c); err != nil {
				return err
			}
			return listInterfaces(c.App.Writer)
		},
	}
}

// listInterfaces prints a line per interface, as tcpdump -D does: index,
// name, state, MTU, driver, and the hooks ringcap would use.
func listInterfaces(w io.Writer) error {
	ifaces, err := capture.ListInterfaces()
	if err != nil {
		return err
	}
	for _, ifc := range ifaces {
		fmt.Fprintf(w, "%d.%s [%s, MTU %d, driver %s]: inbound at %s; outbound at tcx egress\n",
			ifc.Index, ifc.Name, ifc.State, ifc.MTU, ifc.Driver, ifc.Inbound(noteText))
	}
	return nil
}
