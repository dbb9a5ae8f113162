// Package wtwire is the WebTorrent tracker protocol's messages, as
// bittorrent-tracker's client and p2p-media-loader send them over
// WebSocket: decoding (validating, as encoding/json/v2 does, faster for
// the shapes clients send) and encoding the replies and relayed offers.
// The tracker's /announce handler is the only user; its fuzz tests are
// here.
package wtwire

import (
	"bytes"
	"io"
	"strconv"
	"sync"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Messages are decoded with encoding/json/v2's prototype, as Unmarshal
// does (Decode takes the fields from its tokenizer by hand, a fifth of
// encoding/json's time: BenchmarkDecodeV2 against BenchmarkDecodeTokens): case-sensitive, rejecting
// invalid UTF-8 and duplicate names, as a tracker should.

// Msg is every message of the protocol; Action says which fields count.
type Msg struct {
	Action   string         `json:"action"`
	InfoHash jsontext.Value `json:"info_hash"` // a string, or a list (scrape)
	PeerID   string         `json:"peer_id"`
	NumWant  *int           `json:"numwant"`
	Event    string         `json:"event"`
	Offers   []Offer        `json:"offers"`
	Answer   jsontext.Value `json:"answer"`
	OfferID  string         `json:"offer_id"`
	ToPeerID string         `json:"to_peer_id"`
}

type Offer struct {
	Offer   jsontext.Value `json:"offer"`
	OfferID string         `json:"offer_id"`
}

// The messages the tracker sends most (offers and answers handed on, and
// announce replies) are appended by hand: with reflection, encoding them
// was 8% of the compat flood's CPU. TestEncodersMatchMarshal holds them
// to what jsonv2.Marshal writes.

// RelayMsg encodes an offer (field "offer") or answer ("answer") handed
// on, as bittorrent-tracker sends them, in one allocation of the right
// size (ids seldom need escapes). sdp must be a valid JSON value (the
// decoder checked it).
func RelayMsg(field string, sdp []byte, offerID, peerID, infoHash string) []byte {
	b := make([]byte, 0, 80+len(sdp)+len(offerID)+len(peerID)+len(infoHash))
	b = append(b, `{"action":"announce","`...)
	b = append(b, field...)
	b = append(b, `":`...)
	b = append(b, sdp...)
	b = append(b, `,"offer_id":`...)
	b, _ = jsontext.AppendQuote(b, offerID) // ids are valid UTF-8: ValidID
	b = append(b, `,"peer_id":`...)
	b, _ = jsontext.AppendQuote(b, peerID)
	b = append(b, `,"info_hash":`...)
	b, _ = jsontext.AppendQuote(b, infoHash)
	return append(b, '}')
}

// AnnounceReply encodes the reply to an announce.
func AnnounceReply(interval int, infoHash string, complete, incomplete int) []byte {
	b := make([]byte, 0, 96+len(infoHash))
	b = append(b, `{"action":"announce","interval":`...)
	b = strconv.AppendInt(b, int64(interval), 10)
	b = append(b, `,"info_hash":`...)
	b, _ = jsontext.AppendQuote(b, infoHash)
	b = append(b, `,"complete":`...)
	b = strconv.AppendInt(b, int64(complete), 10)
	b = append(b, `,"incomplete":`...)
	b = strconv.AppendInt(b, int64(incomplete), 10)
	return append(b, '}')
}

// MaxOffers bounds the offers of one announce (clients send up to 10).
const MaxOffers = 10

// MaxScrape bounds the info hashes of one scrape.
const MaxScrape = 64

// ValidID reports whether s is a 20-byte binary string (runes 0..255).
func ValidID(s string) bool {
	n := 0
	for _, r := range s {
		if r > 0xff || r == utf8.RuneError {
			return false
		}
		n++
	}
	return n == 20
}

// Failure encodes a refusal, with the swarm when the message named one.
func Failure(reason string, infoHash string) []byte {
	m := map[string]any{"failure reason": reason}
	if infoHash != "" {
		m["info_hash"] = infoHash
		m["action"] = "announce"
	}
	b, _ := jsonv2.Marshal(m)
	return b
}

// Decode decodes one /announce message into m exactly as
// jsonv2.Unmarshal does, faster for the shapes clients send. It walks the
// message with jsontext's tokenizer (which validates it: syntax, UTF-8,
// duplicate names) and takes the fields it knows by hand, leaving raw
// values (offers, answers, info_hash) as slices of b: nothing is copied or
// allocated per offer, and no reflection runs. Anything unusual (escaped
// names, non-integer numbers, a type clients never send, any error) falls
// back to jsonv2.Unmarshal, whose result and error are then
// the answer; FuzzDecode holds the two to the same results.
//
// m's raw values alias b: they are valid while b is (the handler's
// message buffer), and whatever outlives the message must copy them.
func Decode(b []byte, m *Msg) error {
	d := decoders.Get().(*decoder)
	d.in = *bytes.NewBuffer(b) // the tokenizer reads a bytes.Buffer in place
	d.dec.Reset(&d.in)
	ok := d.decode(m)
	decoders.Put(d) // still pointing at b until its next use: b is a pooled buffer too

	if ok {
		return nil
	}
	*m = Msg{}
	return jsonv2.Unmarshal(b, m)
}

type decoder struct {
	in  bytes.Buffer
	dec jsontext.Decoder
}

var decoders = sync.Pool{New: func() any { return new(decoder) }}

// decode reports false where jsonv2.Unmarshal must decide.
func (d *decoder) decode(m *Msg) bool {
	ok := d.object(func(name []byte) bool {
		switch string(name) {
		case `"action"`:
			return d.str(&m.Action)
		case `"info_hash"`:
			return d.raw(&m.InfoHash)
		case `"peer_id"`:
			return d.str(&m.PeerID)
		case `"numwant"`:
			return d.numWant(m)
		case `"event"`:
			return d.str(&m.Event)
		case `"offers"`:
			return d.offers(m)
		case `"answer"`:
			return d.raw(&m.Answer)
		case `"offer_id"`:
			return d.str(&m.OfferID)
		case `"to_peer_id"`:
			return d.str(&m.ToPeerID)
		}
		return d.dec.SkipValue() == nil
	})
	if !ok {
		return false
	}
	_, err := d.dec.ReadToken()
	return err == io.EOF // nothing after the object
}

// object reads an object, handing each member's name (quoted, as on the
// wire) to member, which reads its value; escaped names are left to
// jsonv2.Unmarshal.
func (d *decoder) object(member func(name []byte) bool) bool {
	dec := &d.dec
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return false
	}
	for dec.PeekKind() == '"' {
		name, err := dec.ReadValue()
		if err != nil || bytes.IndexByte(name, '\\') >= 0 || !member(name) {
			return false
		}
	}
	tok, err := dec.ReadToken()
	return err == nil && tok.Kind() == '}'
}

// raw takes the next value as it is, a slice of the message.
func (d *decoder) raw(v *jsontext.Value) bool {
	var err error
	*v, err = d.dec.ReadValue()
	return err == nil
}

// str takes a string; null leaves *s as it is. WebTorrent clients send
// their 20-byte ids as binary strings, escaped where a byte is a control
// character: those are unquoted here too.
func (d *decoder) str(s *string) bool {
	v, err := d.dec.ReadValue()
	switch {
	case err != nil:
		return false
	case v.Kind() == 'n':
		return true
	case v.Kind() != '"':
		return false
	case bytes.IndexByte(v, '\\') < 0:
		*s = string(v[1 : len(v)-1])
		return true
	}
	u, err := jsontext.AppendUnquote(nil, v)
	if err != nil {
		return false
	}
	*s = string(u)
	return true
}

// numWant takes a plain integer, or null.
func (d *decoder) numWant(m *Msg) bool {
	v, err := d.dec.ReadValue()
	switch {
	case err != nil:
		return false
	case v.Kind() == 'n':
		m.NumWant = nil
		return true
	case v.Kind() != '0' || bytes.ContainsAny(v, ".eE"):
		return false
	}
	n, err := strconv.Atoi(string(v))
	if err != nil {
		return false
	}
	m.NumWant = &n
	return true
}

// offers takes the offers array: objects of offer and offer_id.
func (d *decoder) offers(m *Msg) bool {
	dec := &d.dec
	if dec.PeekKind() == 'n' {
		m.Offers = nil
		return dec.SkipValue() == nil
	}
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '[' {
		return false
	}
	m.Offers = m.Offers[:0]
	if m.Offers == nil {
		m.Offers = make([]Offer, 0, MaxOffers)
	}
	for dec.PeekKind() == '{' {
		var o Offer
		ok := d.object(func(name []byte) bool {
			switch string(name) {
			case `"offer"`:
				return d.raw(&o.Offer)
			case `"offer_id"`:
				return d.str(&o.OfferID)
			}
			return dec.SkipValue() == nil
		})
		if !ok {
			return false
		}
		m.Offers = append(m.Offers, o)
	}
	tok, err := dec.ReadToken()
	return err == nil && tok.Kind() == ']'
}
