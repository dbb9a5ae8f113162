//go:build !js

package agent

import (
	"net"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/peercdn/peercdn/signaling"
)

// pionAPI is WebRTC from pion, for native agents.
type pionAPI struct {
	api       *webrtc.API
	relayOnly bool // Config.relayOnly
}

// newAPI builds the WebRTC API; LoopbackOnly keeps every ICE candidate on
// loopback, for tests and local load generation.
func newAPI(cfg *Config) rtcAPI {
	var se webrtc.SettingEngine
	if cfg.LoopbackOnly {
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	}
	if cfg.ICENet != nil {
		se.SetNet(cfg.ICENet)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	}
	if cfg.relayOnly {
		// pion holds relayed pairs back 2 s in case a direct one turns up;
		// with relays the only kind there is none will, and a browser told
		// iceTransportPolicy "relay" does not wait either.
		se.SetRelayAcceptanceMinWait(0)
	}
	// Only data channels: no codecs, and none of pion's default RTP/RTCP
	// interceptors. Those run per peer connection (NACK's loop ticks every
	// 100 ms, the RTCP reports every second) for media never sent; in the
	// simulator, with thousands of connections, they cost 2.5% of its CPU.
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se),
		webrtc.WithMediaEngine(&webrtc.MediaEngine{}),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	return pionAPI{api: api, relayOnly: cfg.relayOnly}
}

func (p pionAPI) NewPeerConnection(servers []signaling.ICEServer) (peerConn, error) {
	ice := make([]webrtc.ICEServer, 0, len(servers))
	for _, s := range servers {
		ice = append(ice, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	conf := webrtc.Configuration{ICEServers: ice}
	if p.relayOnly {
		conf.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	pc, err := p.api.NewPeerConnection(conf)
	if err != nil {
		return nil, err
	}
	return pionPC{pc}, nil
}

type pionPC struct{ pc *webrtc.PeerConnection }

func (p pionPC) CreateDataChannel(label string) (dataChannel, error) {
	ordered := true
	dc, err := p.pc.CreateDataChannel(label, &webrtc.DataChannelInit{Ordered: &ordered})
	if err != nil {
		return nil, err
	}
	return pionDC{dc}, nil
}

func (p pionPC) OnDataChannel(f func(dataChannel)) {
	p.pc.OnDataChannel(func(dc *webrtc.DataChannel) { f(pionDC{dc}) })
}

func (p pionPC) OnICECandidate(f func(string)) {
	p.pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			f("")
			return
		}
		f(c.ToJSON().Candidate)
	})
}

func (p pionPC) OnGone(f func()) {
	p.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed, webrtc.PeerConnectionStateDisconnected:
			f()
		}
	})
}

func (p pionPC) CreateOffer() (string, error) {
	o, err := p.pc.CreateOffer(nil)
	if err == nil {
		err = p.pc.SetLocalDescription(o)
	}
	return o.SDP, err
}

func (p pionPC) CreateAnswer() (string, error) {
	a, err := p.pc.CreateAnswer(nil)
	if err == nil {
		err = p.pc.SetLocalDescription(a)
	}
	return a.SDP, err
}

func (p pionPC) LocalDescription() string {
	if d := p.pc.LocalDescription(); d != nil {
		return d.SDP
	}
	return ""
}

func (p pionPC) SetRemoteDescription(offer bool, sdp string) error {
	t := webrtc.SDPTypeAnswer
	if offer {
		t = webrtc.SDPTypeOffer
	}
	return p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: t, SDP: sdp})
}

func (p pionPC) AddICECandidate(c string) error {
	idx := uint16(0) // data-channel-only sessions have one m-line
	return p.pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: c, SDPMLineIndex: &idx})
}

func (p pionPC) Close() error { return p.pc.Close() }

type pionDC struct{ dc *webrtc.DataChannel }

func (d pionDC) Label() string                          { return d.dc.Label() }
func (d pionDC) IsOpen() bool                           { return d.dc.ReadyState() == webrtc.DataChannelStateOpen }
func (d pionDC) Send(b []byte) error                    { return d.dc.Send(b) }
func (d pionDC) BufferedAmount() uint64                 { return d.dc.BufferedAmount() }
func (d pionDC) SetBufferedAmountLowThreshold(n uint64) { d.dc.SetBufferedAmountLowThreshold(n) }
func (d pionDC) OnBufferedAmountLow(f func())           { d.dc.OnBufferedAmountLow(f) }
func (d pionDC) OnOpen(f func())                        { d.dc.OnOpen(f) }
func (d pionDC) OnClose(f func())                       { d.dc.OnClose(f) }
func (d pionDC) Close() error                           { return d.dc.Close() }
func (d pionDC) OnMessage(f func([]byte, bool)) {
	d.dc.OnMessage(func(m webrtc.DataChannelMessage) { f(m.Data, m.IsString) })
}
