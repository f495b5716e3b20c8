// Package packet holds the frame that a capture hands to its sink. It
// imports only the standard library, so that the capture and the files it
// writes to may both use it without one importing the other.
package packet

import "time"

// Packet is one captured frame.
type Packet struct {
	Interface int // position in the sink's interfaces (writer.Options.Interfaces)
	Time      time.Time
	Length    int    // original length on the wire
	Queue     uint32 // receive queue; see writer.Interface.Queues
	// Outbound says the frame was sent, not received: epb_flags gives the
	// direction, which Wireshark shows.
	Outbound bool
	// DropCount is the frames of the interface lost since the packet
	// before this one (epb_dropcount), so that Wireshark shows where a
	// capture has holes.
	DropCount uint64
	Data      []byte // the captured bytes; valid only during WritePacket
}
