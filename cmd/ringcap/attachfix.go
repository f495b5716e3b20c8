package main

import (
	"slices"
	"strings"

	"github.com/ringcap/ringcap/capture"
)

// withFlagFixes is err with the fix that names ringcap's options after
// each attach error of capture's in it: the library says what went
// wrong, ringcap which of its options gets round it. It unwraps to err.
func withFlagFixes(err error) error {
	if err == nil {
		return nil
	}
	text := err.Error()
	// Each message once: an error joined from several may hold the same
	// one twice, which one replacement fixes everywhere.
	var seen []string
	walkErrors(err, func(e error) {
		fix := attachFix(e)
		if msg := e.Error(); fix != "" && !slices.Contains(seen, msg) {
			seen = append(seen, msg)
			text = strings.ReplaceAll(text, msg, msg+fix)
		}
	})
	if len(seen) == 0 {
		return err
	}
	return &fixedError{err: err, text: text}
}

// attachFix is what follows the message of an attach error of capture's:
// how ringcap's options get round it, or "".
func attachFix(err error) string {
	switch e := err.(type) {
	case *capture.NativeRefusedError:
		fix := ": --hook tc captures its received frames at tcx ingress instead"
		if e.XDPAsked {
			fix += ", --mode generic in generic XDP"
		}
		return fix
	case *capture.NoTCXError:
		switch {
		case e.Hook.Direction == capture.Outbound:
			return ": sent frames need Linux 6.6 or later; -Q in --hook xdp captures the received ones"
		case e.Hook.Behind != "":
			return ": run Linux 6.6 or later, or capture where no other XDP program runs"
		}
		return ": capture inbound frames at XDP with -Q in --hook xdp, or run Linux 6.6 or later"
	case *capture.XDPBusyError:
		return ", and --hook tc captures beside it"
	}
	return ""
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

// fixedError is an error whose message has the fixes in it.
type fixedError struct {
	err  error
	text string
}

func (e *fixedError) Error() string { return e.text }
func (e *fixedError) Unwrap() error { return e.err }
