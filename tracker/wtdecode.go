package tracker

import (
	"bytes"
	"io"
	"strconv"
	"sync"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// wtDecode decodes one /announce message into m exactly as
// jsonv2.Unmarshal does, faster for the shapes clients send. It walks the
// message with jsontext's tokenizer (which validates it: syntax, UTF-8,
// duplicate names) and takes the fields it knows by hand, leaving raw
// values (offers, answers, info_hash) as slices of b: nothing is copied or
// allocated per offer, and no reflection runs. Anything unusual (escaped
// names, non-integer numbers, a type clients never send, any error) falls
// back to jsonv2.Unmarshal, whose result and error are then
// the answer; FuzzWTDecode holds the two to the same results.
//
// m's raw values alias b: they are valid while b is (the handler's
// message buffer), and whatever outlives the message must copy them.
func wtDecode(b []byte, m *wtMsg) error {
	d := wtDecoders.Get().(*wtDecoder)
	d.in = *bytes.NewBuffer(b) // the tokenizer reads a bytes.Buffer in place
	d.dec.Reset(&d.in)
	ok := d.decode(m)
	wtDecoders.Put(d) // still pointing at b until its next use: b is a pooled buffer too

	if ok {
		return nil
	}
	*m = wtMsg{}
	return jsonv2.Unmarshal(b, m)
}

type wtDecoder struct {
	in  bytes.Buffer
	dec jsontext.Decoder
}

var wtDecoders = sync.Pool{New: func() any { return new(wtDecoder) }}

// decode reports false where jsonv2.Unmarshal must decide.
func (d *wtDecoder) decode(m *wtMsg) bool {
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
func (d *wtDecoder) object(member func(name []byte) bool) bool {
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
func (d *wtDecoder) raw(v *jsontext.Value) bool {
	var err error
	*v, err = d.dec.ReadValue()
	return err == nil
}

// str takes a string; null leaves *s as it is. WebTorrent clients send
// their 20-byte ids as binary strings, escaped where a byte is a control
// character: those are unquoted here too.
func (d *wtDecoder) str(s *string) bool {
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
func (d *wtDecoder) numWant(m *wtMsg) bool {
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
func (d *wtDecoder) offers(m *wtMsg) bool {
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
		m.Offers = make([]wtOffer, 0, wtMaxOffers)
	}
	for dec.PeekKind() == '{' {
		var o wtOffer
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
