//go:build !js

package agent

import (
	"net"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// newAPI builds the WebRTC API; LoopbackOnly keeps every ICE candidate on
// loopback, for tests and local load generation.
func newAPI(cfg *Config) *webrtc.API {
	var se webrtc.SettingEngine
	if cfg.LoopbackOnly {
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}
