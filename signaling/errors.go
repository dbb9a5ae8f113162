package signaling

import (
	"errors"
	"fmt"
)

// Code is a stable, machine-readable error code carried in error messages.
type Code string

// Error codes. Each is documented in docs/protocol.md with what the agent
// should do about it.
const (
	CodeBadMessage         Code = "bad_message"         // the frame did not decode or validate; fix the sender
	CodeUnsupportedVersion Code = "unsupported_version" // hello.v outside [MinVersion, Version]; upgrade the agent
	CodeHelloFirst         Code = "hello_first"         // anything before hello, or hello twice
	CodeRateLimited        Code = "rate_limited"        // too many messages; slow down
	CodeTooManySwarms      Code = "too_many_swarms"     // leave a swarm before joining another
	CodeSwarmFull          Code = "swarm_full"          // the swarm has its maximum of peers; use the CDN only
	CodeNotInSwarm         Code = "not_in_swarm"        // join the swarm first
	CodeUnknownPeer        Code = "unknown_peer"        // the target is gone or not in that swarm
	CodeUnknownOffer       Code = "unknown_offer"       // answer/candidate for an offer the tracker never relayed
	CodeTooManyOffers      Code = "too_many_offers"     // too many unanswered offers outstanding
	CodeBadToken           Code = "bad_token"           // join token missing, malformed or not for this content
	CodeTokenExpired       Code = "token_expired"       // fetch a fresh token from the site
	CodeDraining           Code = "draining"            // node shutting down; reconnect elsewhere
	CodeUnavailable        Code = "unavailable"         // the peer is on another tracker node that cannot be reached now; try other peers
	CodeBanned             Code = "banned"              // removed from this swarm: peers reported its bytes as corrupt
	CodeP2POff             Code = "p2p_off"             // this viewer is outside the P2P rollout (policy p2p false): use the CDN only
	CodeInternal           Code = "internal"            // tracker bug; retry later
)

// ErrBadMessage is wrapped by every Decode and Validate error.
var ErrBadMessage = errors.New("signaling: bad message")

// ErrClosed is returned by a Client used after Close.
var ErrClosed = errors.New("signaling: client closed")

// Error is an error message received from the tracker.
type Error struct {
	Code Code
	Text string
	Ref  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("signaling: tracker error %s: %s", e.Code, e.Text)
}

// ErrorMessage builds the error message for code, echoing ref.
func ErrorMessage(code Code, ref, text string) *Message {
	return &Message{Type: TypeError, Code: code, Ref: ref, Text: text}
}
