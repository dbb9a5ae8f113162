package tracker

// BenchmarkWTDecode compares encoding/json with the v2 prototype /announce
// decodes with, on an aquatic-style announce with 10 offers.

import (
	"encoding/json"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
)

func wtSample() []byte {
	var offers []string
	for range 10 {
		offers = append(offers, `{"offer_id":"abcdefghij0123456789","offer":{"type":"offer","sdp":"`+strings.Repeat("abcdefg-", 15)+`"}}`)
	}
	return []byte(`{"action":"announce","info_hash":"abcdefghij0123456789","peer_id":"-WW0001-abcdefghijkl","numwant":10,"event":"started","uploaded":0,"downloaded":0,"left":50,"offers":[` + strings.Join(offers, ",") + `]}`)
}

func BenchmarkWTDecodeV1(b *testing.B) {
	s := wtSample()
	for b.Loop() {
		var m wtMsg
		if err := json.Unmarshal(s, &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWTDecodeV2(b *testing.B) {
	s := wtSample()
	for b.Loop() {
		var m wtMsg
		if err := jsonv2.Unmarshal(s, &m); err != nil {
			b.Fatal(err)
		}
	}
}
