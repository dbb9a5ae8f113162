package agent

import "strings"

// ICE over TCP is neither offered nor tried. Browsers gather TCP host
// candidates beside the UDP ones, for every interface; a pair of them
// connects only where UDP is blocked and both viewers share a network, a
// case TURN (over TCP or TLS, whose relay candidates are UDP) serves
// anyway. Each costs both sides a signaling message through the tracker
// and a call into the peer connection: in the field harness a late
// joiner's addIceCandidate calls took 0.54 s of its main thread in the 8 s
// after its agent started, on a page that was then 87% busy and stalled.
// (pion, natively, gathers none: this changes nothing between native
// agents.)

// isTCPCandidate reports whether an ICE candidate ("candidate:foundation
// component transport …", with or without "a=") is over TCP.
func isTCPCandidate(c string) bool {
	f := strings.Fields(c)
	return len(f) > 2 && strings.EqualFold(f[2], "tcp")
}
