package tracker

import (
	"bytes"
	"math/rand/v2"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// wtRelayRef and wtAnnounceReplyRef are the messages the hand-written
// encoders write, as structs for jsonv2.Marshal: the reference they are
// held to.
type wtRelayRef struct {
	Action   string         `json:"action"`
	Offer    jsontext.Value `json:"offer,omitempty"`
	Answer   jsontext.Value `json:"answer,omitempty"`
	OfferID  string         `json:"offer_id"`
	PeerID   string         `json:"peer_id"`
	InfoHash string         `json:"info_hash"`
}

type wtAnnounceReplyRef struct {
	Action     string `json:"action"`
	Interval   int    `json:"interval"`
	InfoHash   string `json:"info_hash"`
	Complete   int    `json:"complete"`
	Incomplete int    `json:"incomplete"`
}

// The hand-written encoders write what jsonv2.Marshal writes for the same
// message, byte for byte, for ids of any of the 256 runes a binary string
// holds (quotes, backslashes, control characters, Latin-1).
func TestWTEncodersMatchMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	id := func() string {
		r := make([]rune, 20)
		for i := range r {
			r[i] = rune(rng.IntN(256))
		}
		return string(r)
	}
	sdp := jsontext.Value(`{"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n\u0000\"é"}`)
	for range 1000 {
		offerID, peerID, ih := id(), id(), id()
		if !validID(offerID) || !validID(peerID) || !validID(ih) {
			t.Fatal("test ids must be valid")
		}
		want, err := jsonv2.Marshal(&wtRelayRef{Action: "announce", Offer: sdp, OfferID: offerID, PeerID: peerID, InfoHash: ih})
		if err != nil {
			t.Fatal(err)
		}
		if got := wtRelayMsg("offer", sdp, offerID, peerID, ih); !bytes.Equal(got, want) {
			t.Fatalf("offer:\n got %s\nwant %s", got, want)
		}
		want, _ = jsonv2.Marshal(&wtRelayRef{Action: "announce", Answer: sdp, OfferID: offerID, PeerID: peerID, InfoHash: ih})
		if got := wtRelayMsg("answer", sdp, offerID, peerID, ih); !bytes.Equal(got, want) {
			t.Fatalf("answer:\n got %s\nwant %s", got, want)
		}
		c, inc := rng.IntN(1000), rng.IntN(1000)
		want, _ = jsonv2.Marshal(&wtAnnounceReplyRef{Action: "announce", Interval: 120, InfoHash: ih, Complete: c, Incomplete: inc})
		if got := wtAnnounceReply(120, ih, c, inc); !bytes.Equal(got, want) {
			t.Fatalf("announce response:\n got %s\nwant %s", got, want)
		}
	}
}
