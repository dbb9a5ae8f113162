// Package peerwire is the peer<->peer segment protocol that agents speak
// over a WebRTC data channel, defined once for every build.
//
// # Protocol v1
//
// One ordered, reliable data channel labelled "peercdn/1" per peer pair and
// swarm; one binary message per data-channel message. Every message starts
// with a two-byte header: version (1), then type.
//
//	have     [1 1] flags:u8 count:u16 seq:u64*count    segments held (flags: 0 add, 1 replace all, 2 removed)
//	loading  [1 2] count:u16 seq:u64*count             segments being fetched from the CDN now
//	request  [1 3] id:u32 seq:u64 offset:u32           send segment seq from byte offset
//	data     [1 4] id:u32 offset:u32 total:u32 bytes…  a chunk of request id at offset; total = segment size
//	cancel   [1 5] id:u32                              stop sending request id
//	absent   [1 6] id:u32                              the sender does not hold what id asked for
//	status   [1 7] flags:u8                            how the sender takes part (flags: 1 does not seed)
//
// Integers are big-endian. A segment is announced in have only once it is
// whole. The responder sends data chunks of at most MaxChunk bytes, pacing on
// the channel's buffered amount, and interleaves concurrent requests so that
// one large or slow request never blocks the others. The requester cancels
// a request it no longer wants, for instance when it completes the segment
// from the CDN instead.
//
// A sender whose status says it does not seed (its uplink is measured below
// the stream's bitrate) takes segments from peers but fetches none from the
// CDN for its neighbours: they elect the segment's seed among the others.
// Without a status a peer seeds. Receivers ignore status flags they do not
// know, and messages of a type they do not know (ErrUnknownType): agents
// from before status closed the channel on it.
package peerwire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the protocol version; Label is the data channel label that
// carries it, so peers of different versions do not misread each other.
const (
	Version = 1
	Label   = "peercdn/1"
)

// Limits. MaxChunk is 16 KiB: the data-channel message size every WebRTC stack
// accepts (Chromium closes channels on messages over 256 KiB; larger messages
// gained nothing in BenchmarkTransfer on loopback).
const (
	MaxChunk       = 16 << 10
	MaxSegmentSize = 64 << 20 // bytes of one segment
	MaxHaveCount   = 1024     // seqs in one have/loading message
	headerLen      = 2
	MaxMessage     = headerLen + 12 + MaxChunk
)

// Type is a message type.
type Type uint8

// Message types.
const (
	TypeHave    Type = 1
	TypeLoading Type = 2
	TypeRequest Type = 3
	TypeData    Type = 4
	TypeCancel  Type = 5
	TypeAbsent  Type = 6
	TypeStatus  Type = 7
)

// Have flags.
const (
	HaveAdd     = 0
	HaveReplace = 1
	HaveRemoved = 2
)

// Status flags.
const (
	StatusNoSeed = 1 << 0
)

// Message is one decoded message; Type says which fields are set.
type Message struct {
	Type   Type
	Flags  uint8    // have, status
	Seqs   []uint64 // have, loading
	ID     uint32   // request, data, cancel, absent
	Seq    uint64   // request
	Offset uint32   // request, data
	Total  uint32   // data
	Data   []byte   // data; aliases the input of Decode
}

// ErrBadMessage is wrapped by every Decode error; ErrUnknownType (which
// wraps it) by those of a message type this version does not know, which a
// receiver may skip: a later version's.
var (
	ErrBadMessage  = errors.New("peerwire: bad message")
	ErrUnknownType = fmt.Errorf("%w: unknown type", ErrBadMessage)
)

// Decode parses one message. Data aliases b. It never panics.
func Decode(b []byte) (Message, error) {
	var m Message
	if len(b) < headerLen {
		return m, fmt.Errorf("%w: %d bytes", ErrBadMessage, len(b))
	}
	if b[0] != Version {
		return m, fmt.Errorf("%w: version %d", ErrBadMessage, b[0])
	}
	if len(b) > MaxMessage {
		return m, fmt.Errorf("%w: %d bytes exceeds %d", ErrBadMessage, len(b), MaxMessage)
	}
	m.Type = Type(b[1])
	p := b[headerLen:]
	need := func(n int) error {
		if len(p) != n {
			return fmt.Errorf("%w: type %d wants %d bytes, got %d", ErrBadMessage, m.Type, n, len(p))
		}
		return nil
	}
	switch m.Type {
	case TypeHave, TypeLoading:
		if m.Type == TypeHave {
			if len(p) < 1 {
				return m, fmt.Errorf("%w: short have", ErrBadMessage)
			}
			m.Flags, p = p[0], p[1:]
			if m.Flags > HaveRemoved {
				return m, fmt.Errorf("%w: have flags %d", ErrBadMessage, m.Flags)
			}
		}
		if len(p) < 2 {
			return m, fmt.Errorf("%w: short count", ErrBadMessage)
		}
		n := int(binary.BigEndian.Uint16(p))
		p = p[2:]
		if n > MaxHaveCount {
			return m, fmt.Errorf("%w: %d seqs exceed %d", ErrBadMessage, n, MaxHaveCount)
		}
		if err := need(8 * n); err != nil {
			return m, err
		}
		m.Seqs = make([]uint64, n)
		for i := range m.Seqs {
			m.Seqs[i] = binary.BigEndian.Uint64(p[8*i:])
		}
	case TypeRequest:
		if err := need(16); err != nil {
			return m, err
		}
		m.ID = binary.BigEndian.Uint32(p)
		m.Seq = binary.BigEndian.Uint64(p[4:])
		m.Offset = binary.BigEndian.Uint32(p[12:])
		if m.Offset >= MaxSegmentSize {
			return m, fmt.Errorf("%w: offset %d", ErrBadMessage, m.Offset)
		}
	case TypeData:
		if len(p) < 12 {
			return m, fmt.Errorf("%w: short data", ErrBadMessage)
		}
		m.ID = binary.BigEndian.Uint32(p)
		m.Offset = binary.BigEndian.Uint32(p[4:])
		m.Total = binary.BigEndian.Uint32(p[8:])
		m.Data = p[12:]
		if m.Total == 0 || m.Total > MaxSegmentSize || len(m.Data) == 0 ||
			uint64(m.Offset)+uint64(len(m.Data)) > uint64(m.Total) {
			return m, fmt.Errorf("%w: chunk %d+%d of %d", ErrBadMessage, m.Offset, len(m.Data), m.Total)
		}
	case TypeCancel, TypeAbsent:
		if err := need(4); err != nil {
			return m, err
		}
		m.ID = binary.BigEndian.Uint32(p)
	case TypeStatus:
		if err := need(1); err != nil {
			return m, err
		}
		m.Flags = p[0]
	default:
		return m, fmt.Errorf("%w %d", ErrUnknownType, m.Type)
	}
	return m, nil
}

func header(t Type, n int) []byte {
	b := make([]byte, headerLen, headerLen+n)
	b[0], b[1] = Version, byte(t)
	return b
}

// Have encodes a have message (flags HaveAdd, HaveReplace or HaveRemoved).
// Callers split more than MaxHaveCount seqs over several messages.
func Have(flags uint8, seqs []uint64) []byte {
	b := header(TypeHave, 3+8*len(seqs))
	b = append(b, flags)
	return appendSeqs(b, seqs)
}

// Loading encodes a loading message.
func Loading(seqs []uint64) []byte {
	return appendSeqs(header(TypeLoading, 2+8*len(seqs)), seqs)
}

func appendSeqs(b []byte, seqs []uint64) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(seqs)))
	for _, s := range seqs {
		b = binary.BigEndian.AppendUint64(b, s)
	}
	return b
}

// Request encodes a request.
func Request(id uint32, seq uint64, offset uint32) []byte {
	b := header(TypeRequest, 16)
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint64(b, seq)
	return binary.BigEndian.AppendUint32(b, offset)
}

// AppendData appends a data message to dst (reuse dst to avoid allocating).
func AppendData(dst []byte, id, offset, total uint32, chunk []byte) []byte {
	dst = append(dst, Version, byte(TypeData))
	dst = binary.BigEndian.AppendUint32(dst, id)
	dst = binary.BigEndian.AppendUint32(dst, offset)
	dst = binary.BigEndian.AppendUint32(dst, total)
	return append(dst, chunk...)
}

// Cancel encodes a cancel.
func Cancel(id uint32) []byte {
	return binary.BigEndian.AppendUint32(header(TypeCancel, 4), id)
}

// Absent encodes an absent.
func Absent(id uint32) []byte {
	return binary.BigEndian.AppendUint32(header(TypeAbsent, 4), id)
}

// Status encodes a status message (flags: StatusNoSeed, or 0).
func Status(flags uint8) []byte {
	return append(header(TypeStatus, 1), flags)
}
