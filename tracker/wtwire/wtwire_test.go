package wtwire

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
func TestEncodersMatchMarshal(t *testing.T) {
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
		if !ValidID(offerID) || !ValidID(peerID) || !ValidID(ih) {
			t.Fatal("test ids must be valid")
		}
		want, err := jsonv2.Marshal(&wtRelayRef{Action: "announce", Offer: sdp, OfferID: offerID, PeerID: peerID, InfoHash: ih})
		if err != nil {
			t.Fatal(err)
		}
		if got := RelayMsg("offer", sdp, offerID, peerID, ih); !bytes.Equal(got, want) {
			t.Fatalf("offer:\n got %s\nwant %s", got, want)
		}
		want, _ = jsonv2.Marshal(&wtRelayRef{Action: "announce", Answer: sdp, OfferID: offerID, PeerID: peerID, InfoHash: ih})
		if got := RelayMsg("answer", sdp, offerID, peerID, ih); !bytes.Equal(got, want) {
			t.Fatalf("answer:\n got %s\nwant %s", got, want)
		}
		c, inc := rng.IntN(1000), rng.IntN(1000)
		want, _ = jsonv2.Marshal(&wtAnnounceReplyRef{Action: "announce", Interval: 120, InfoHash: ih, Complete: c, Incomplete: inc})
		if got := AnnounceReply(120, ih, c, inc); !bytes.Equal(got, want) {
			t.Fatalf("announce response:\n got %s\nwant %s", got, want)
		}
	}
}

// FuzzDecode holds Decode to jsonv2.Unmarshal: the same error or
// none, and the same fields.
func FuzzDecode(f *testing.F) {
	f.Add(sample())
	for _, s := range []string{
		`{"action":"announce","info_hash":["a","b"],"numwant":null,"offers":null,"answer":{"type":"answer","sdp":"x"},"offer_id":"o","to_peer_id":"p"}`,
		`{"action":"announce","offers":[{"offer":null},{"offer_id":"\u0041"}],"numwant":1e1}`,
		`{"action":"scrape","info_hash":"x"} {}`,
		`{"action":"a","action":"b"}`,
		`{"\u0061ction":"announce","numwant":-3,"event":"stopped","offers":[]}`,
		`{"offers":[null],"numwant":99999999999999999999}`,
		"{\"peer_id\":\"\xff\"}",
		`[]`, `null`, ``, `{"numwant":"5"}`, `{"offers":{}}`,
		`{"action":"announce","peer_id":"\u0000\u001f-\"\\\/\b\f\n\r\t\u00e9","info_hash":"\u0001","offers":[{"offer_id":"\u0002x","offer":{}}]}`,
		`{"peer_id":"\ud800"}`, `{"peer_id":"\udc00\ud83d\ude00"}`, `{"event":"\u00"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got, want Msg
		gotErr := Decode(b, &got)
		wantErr := jsonv2.Unmarshal(b, &want)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%q: Decode error %v, Unmarshal error %v", b, gotErr, wantErr)
		}
		if wantErr != nil {
			return
		}
		same := got.Action == want.Action && got.PeerID == want.PeerID && got.Event == want.Event &&
			got.OfferID == want.OfferID && got.ToPeerID == want.ToPeerID &&
			bytes.Equal(got.InfoHash, want.InfoHash) && bytes.Equal(got.Answer, want.Answer) &&
			(got.InfoHash == nil) == (want.InfoHash == nil) && (got.Answer == nil) == (want.Answer == nil) &&
			(got.NumWant == nil) == (want.NumWant == nil) && (got.NumWant == nil || *got.NumWant == *want.NumWant) &&
			len(got.Offers) == len(want.Offers)
		for i := 0; same && i < len(got.Offers); i++ {
			g, w := got.Offers[i], want.Offers[i]
			same = g.OfferID == w.OfferID && bytes.Equal(g.Offer, w.Offer) && (g.Offer == nil) == (w.Offer == nil)
		}
		if !same {
			t.Fatalf("%q:\nDecode    %+v\nUnmarshal %+v", b, got, want)
		}
	})
}
