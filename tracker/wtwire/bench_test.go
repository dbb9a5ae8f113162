package wtwire

// BenchmarkDecode* compare encoding/json, the v2 prototype's Unmarshal
// and Decode (its tokenizer, fields taken by hand), on an aquatic-style
// announce with 10 offers.

import (
	"encoding/json"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

func sample() []byte {
	var offers []string
	for range 10 {
		offers = append(offers, `{"offer_id":"abcdefghij0123456789","offer":{"type":"offer","sdp":"`+strings.Repeat("abcdefg-", 15)+`"}}`)
	}
	return []byte(`{"action":"announce","info_hash":"abcdefghij0123456789","peer_id":"-WW0001-abcdefghijkl","numwant":10,"event":"started","uploaded":0,"downloaded":0,"left":50,"offers":[` + strings.Join(offers, ",") + `]}`)
}

// wtMsgV1 is Msg as encoding/json decodes it (raw values as
// json.RawMessage).
type wtMsgV1 struct {
	Action   string          `json:"action"`
	InfoHash json.RawMessage `json:"info_hash"`
	PeerID   string          `json:"peer_id"`
	NumWant  *int            `json:"numwant"`
	Event    string          `json:"event"`
	Offers   []struct {
		Offer   json.RawMessage `json:"offer"`
		OfferID string          `json:"offer_id"`
	} `json:"offers"`
	Answer   json.RawMessage `json:"answer"`
	OfferID  string          `json:"offer_id"`
	ToPeerID string          `json:"to_peer_id"`
}

func BenchmarkDecodeV1(b *testing.B) {
	s := sample()
	for b.Loop() {
		var m wtMsgV1
		if err := json.Unmarshal(s, &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeV2(b *testing.B) {
	s := sample()
	for b.Loop() {
		var m Msg
		if err := jsonv2.Unmarshal(s, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeTokens is Decode, what /announce decodes with: the
// same results as V2 without reflection or copies.
func BenchmarkDecodeTokens(b *testing.B) {
	s := sample()
	for b.Loop() {
		var m Msg
		if err := Decode(s, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode compares jsonv2.Marshal with the hand-written encoder
// for an offer handed on (120-byte SDP, as in the compat mix).
func BenchmarkEncode(b *testing.B) {
	sdp := jsontext.Value(`{"type":"offer","sdp":"` + strings.Repeat("abcdefg-", 15) + `"}`)
	id := "abcdefghij0123456789"
	b.Run("marshal", func(b *testing.B) {
		for b.Loop() {
			if _, err := jsonv2.Marshal(&wtRelayRef{Action: "announce", Offer: sdp, OfferID: id, PeerID: id, InfoHash: id}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("by hand", func(b *testing.B) {
		for b.Loop() {
			RelayMsg("offer", sdp, id, id, id)
		}
	})
}
