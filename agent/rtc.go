package agent

import "github.com/peercdn/peercdn/signaling"

// The agent's view of WebRTC: the few calls it makes, behind interfaces so
// that native builds use pion (rtc_native.go) and the browser build uses the
// browser's own RTCPeerConnection through syscall/js (rtc_js.go), which
// keeps pion's ICE, DTLS and SCTP stacks out of the wasm.

// rtcAPI creates peer connections.
type rtcAPI interface {
	NewPeerConnection(ice []signaling.ICEServer) (peerConn, error)
}

// peerConn is one RTCPeerConnection carrying one data channel.
type peerConn interface {
	CreateDataChannel(label string) (dataChannel, error)
	OnDataChannel(func(dataChannel))
	// OnICECandidate gets each local candidate ("candidate:…"), then "" at
	// the end of gathering.
	OnICECandidate(func(candidate string))
	// OnGone fires when the connection failed, disconnected or closed.
	OnGone(func())
	// CreateOffer and CreateAnswer also set the local description and
	// return its SDP.
	CreateOffer() (string, error)
	CreateAnswer() (string, error)
	// LocalDescription is the local SDP with the candidates gathered so
	// far ("" before CreateOffer or CreateAnswer).
	LocalDescription() string
	SetRemoteDescription(offer bool, sdp string) error
	AddICECandidate(candidate string) error
	Close() error
}

// dataChannel is an ordered, reliable, binary data channel.
type dataChannel interface {
	Label() string
	IsOpen() bool
	Send([]byte) error
	BufferedAmount() uint64
	SetBufferedAmountLowThreshold(uint64)
	OnBufferedAmountLow(func())
	OnOpen(func())
	OnClose(func())
	// OnMessage gets messages in order; text is true for a string message
	// (not part of the protocol).
	OnMessage(func(data []byte, text bool))
	Close() error
}
