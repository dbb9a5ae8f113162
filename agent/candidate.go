package agent

import (
	"strings"
	"time"
)

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

// An offer or answer carries the candidates gathered before it goes out,
// instead of each following in a message of its own (trickle ICE): each
// trickled candidate cost a relay through the tracker and, on the other
// side, a task and an addIceCandidate call on the page's main thread. In
// the field harness, 190 relays for 15 connections: 10 candidates a
// connection, on late joiners whose pages were saturated. Gathering host
// and server-reflexive candidates takes a few milliseconds to a round trip
// to the STUN server; a description waits for it at most gatherWait, and
// what is gathered later (a slow STUN or TURN server) still trickles.
const gatherWait = 250 * time.Millisecond

// gatheringEnded notes the end of ICE gathering (the "" candidate).
func (r *remote) gatheringEnded() {
	r.gatherOnce.Do(func() { close(r.gathered) })
}

// trickles reports whether a candidate gathered now goes on its own: the
// description already went out (or is going, see describe).
func (r *remote) trickles() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.described
}

// describe waits for ICE gathering to end, at most gatherWait, and returns
// the local description with the candidates gathered by then (created,
// the SDP CreateOffer or CreateAnswer returned, if it has none). It marks
// the description sent first, then reads it: a candidate is in the local
// description before its event fires, so one whose handler saw no
// description yet is in what is read here, and one after it trickles (at
// worst twice, which ICE ignores). No lock is held across the read:
// pion's candidate handlers run under its own.
func (r *remote) describe(created string) string {
	t := time.NewTimer(gatherWait)
	select {
	case <-r.gathered:
	case <-t.C:
	case <-r.closed:
	}
	t.Stop()
	r.mu.Lock()
	r.described = true
	r.mu.Unlock()
	sdp := r.pc.LocalDescription()
	if sdp == "" {
		sdp = created
	}
	return withoutTCPCandidates(sdp)
}

// withoutTCPCandidates drops the TCP candidates from an SDP, as they are
// not trickled either.
func withoutTCPCandidates(sdp string) string {
	if !strings.Contains(sdp, " tcp ") && !strings.Contains(sdp, " TCP ") {
		return sdp
	}
	lines := strings.SplitAfter(sdp, "\n")
	out := lines[:0]
	for _, l := range lines {
		if strings.HasPrefix(l, "a=candidate:") && isTCPCandidate(strings.TrimPrefix(l, "a=")) {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "")
}
