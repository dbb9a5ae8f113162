package signaling

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestDecodeValidates(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"hello", `{"type":"hello","v":1}`, true},
		{"hello without version", `{"type":"hello"}`, false},
		{"join", `{"type":"join","swarm":{"content":"/a.m3u8","rendition":"720p"},"slots":3}`, true},
		{"join without swarm", `{"type":"join"}`, false},
		{"join empty content", `{"type":"join","swarm":{"content":""}}`, false},
		{"join control char", `{"type":"join","swarm":{"content":"/a\u0000b"}}`, false},
		{"join huge content", `{"type":"join","swarm":{"content":"` + strings.Repeat("a", MaxContentLen+1) + `"}}`, false},
		{"negative slots", `{"type":"ping","slots":-1}`, false},
		{"peer outcomes", `{"type":"ping","usage":{"cdn":0,"p2p":0,"up":0,"peers_connected":3,"peers_failed":1}}`, true},
		{"negative failures", `{"type":"ping","usage":{"cdn":0,"p2p":0,"up":0,"peers_failed":-1}}`, false},
		{"failures over the bound", `{"type":"ping","usage":{"cdn":0,"p2p":0,"up":0,"peers_connected":100001}}`, false},
		{"usage under the long names", `{"type":"ping","usage":{"cdn_bytes":1,"p2p_bytes":2,"upload_bytes":3}}`, true},
		{"long-named bytes over the bound", `{"type":"ping","usage":{"cdn_bytes":1099511627777}}`, false},
		{"offer", `{"type":"offer","swarm":{"content":"/a"},"to":"p","offer_id":"o","sdp":"v=0"}`, true},
		{"offer without sdp", `{"type":"offer","swarm":{"content":"/a"},"to":"p","offer_id":"o"}`, false},
		{"offer without to", `{"type":"offer","swarm":{"content":"/a"},"offer_id":"o","sdp":"v"}`, false},
		{"offer without id", `{"type":"offer","swarm":{"content":"/a"},"to":"p","sdp":"v"}`, false},
		{"end of candidates", `{"type":"candidate","swarm":{"content":"/a"},"to":"p","offer_id":"o"}`, true},
		{"policy off", `{"type":"policy","p2p":false}`, true},
		{"policy without p2p", `{"type":"policy"}`, false},
		{"policy p2p not a bool", `{"type":"policy","p2p":"no"}`, false},
		{"welcome in the control cohort", `{"type":"welcome","v":1,"peer_id":"X","p2p":false}`, true},
		{"unknown type", `{"type":"bogus"}`, false},
		{"no type", `{}`, false},
		{"not an object", `[1,2]`, false},
		{"wrong field type", `{"type":"hello","v":"1"}`, false},
		{"unknown fields ignored", `{"type":"ping","future":true}`, true},
		{"error", `{"type":"error","code":"rate_limited","message":"slow down"}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode([]byte(tc.in))
			if tc.ok != (err == nil) {
				t.Fatalf("Decode(%s) = %+v, %v; want ok=%v", tc.in, m, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrBadMessage) {
				t.Fatalf("error %v does not wrap ErrBadMessage", err)
			}
		})
	}
}

func TestContentID(t *testing.T) {
	for in, want := range map[string]string{
		"https://cdn1.example.com/live/show/master.m3u8?token=abc&exp=1": "/live/show/master.m3u8",
		"https://cdn2.example.net/live/show/master.m3u8?token=xyz":       "/live/show/master.m3u8",
		"/demo/vod/master.m3u8#t=10":                                     "/demo/vod/master.m3u8",
		"relative.m3u8?x=1":                                              "relative.m3u8",
	} {
		if got := ContentID(in); got != want {
			t.Errorf("ContentID(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzDecode: Decode never panics, and what it accepts survives a round trip
// (compared on the wire: an empty list and a missing one mean the same).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"hello","v":1}`,
		`{"type":"join","swarm":{"content":"/a.m3u8","rendition":"720p"},"token":"v1.1.x","slots":3,"ref":"1"}`,
		`{"type":"offer","swarm":{"content":"/a"},"to":"p","offer_id":"o","sdp":"v=0\r\n"}`,
		`{"type":"candidate","swarm":{"content":"/a"},"from":"p","offer_id":"o","candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host"}`,
		`{"type":"welcome","v":1,"peer_id":"X","ice_servers":[{"urls":["stun:s"]}],"limits":{"max_message_bytes":1}}`,
		`{"type":"peers","swarm":{"content":"/a"},"peers":["a","b"]}`,
		`{"type":"goaway","message":"drain","retry_ms":5}`,
		`{"type":"policy","p2p":false}`,
		`{"type":"welcome","v":1,"peer_id":"X","p2p":true}`,
		`{"type":"error","code":"x"}`,
		`{"type":"ping","slots":2,"usage":{"cdn":1,"p2p":2,"up":3,"stall_ms":4}}`,
		`{"type":"ping","usage":{"cdn":-1,"p2p":1099511627777,"up":0}}`,
		`{"type":"ping","usage":{"cdn":0,"p2p":0,"up":0,"peers_connected":3,"peers_failed":1}}`,
		`{"type":"ping","usage":{"cdn":0,"p2p":0,"up":0,"peers_failed":-1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		out, err := Encode(m)
		if err != nil {
			t.Fatalf("accepted %q but cannot encode it: %v", b, err)
		}
		m2, err := Decode(out)
		if err != nil {
			t.Fatalf("re-decoding %q: %v", out, err)
		}
		out2, err := Encode(m2)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed %s into %s (%v)", out, out2, err)
		}
	})
}

// Usage.Add and Minus cover every field: a field added to Usage and left
// out of them would be lost from every sum and report.
func TestUsageAddMinus(t *testing.T) {
	a := Usage{CDNBytes: 1, P2PBytes: 2, UploadBytes: 3, StallMs: 4, PeersConnected: 5, PeersFailed: 6}
	b := a
	b.Add(a)
	if want := (Usage{2, 4, 6, 8, 10, 12}); b != want {
		t.Fatalf("Add: %+v, want %+v", b, want)
	}
	if got := b.Minus(a); got != a {
		t.Fatalf("Minus: %+v, want %+v", got, a)
	}
}

// Either name of a usage byte count reads into the same field; the long
// name wins over the short one.
func TestUsageNames(t *testing.T) {
	for _, in := range []string{
		`{"type":"ping","usage":{"cdn":1,"p2p":2,"up":3,"stall_ms":4}}`,
		`{"type":"ping","usage":{"cdn_bytes":1,"p2p_bytes":2,"upload_bytes":3,"stall_ms":4}}`,
		`{"type":"ping","usage":{"cdn":9,"cdn_bytes":1,"p2p":2,"upload_bytes":3,"stall_ms":4}}`,
	} {
		m, err := Decode([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if want := (Usage{CDNBytes: 1, P2PBytes: 2, UploadBytes: 3, StallMs: 4}); *m.Usage != want {
			t.Errorf("%s: %+v, want %+v", in, *m.Usage, want)
		}
	}
}
