package wsconn

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/gobwas/ws"
)

var helloJSON = []byte(`{"type":"hello","v":1}`)

// The server's frames, read back by gobwas/ws's reader, at every length
// encoding's edges.
func TestAppendFrame(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000} {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i * 7)
		}
		b := appendFrame([]byte("prefix"), ws.OpText, p)
		if string(b[:6]) != "prefix" {
			t.Fatal("appendFrame overwrote dst")
		}
		f, err := ws.ReadFrame(bytes.NewReader(b[6:]))
		if err != nil || !f.Header.Fin || f.Header.Masked || f.Header.OpCode != ws.OpText || !bytes.Equal(f.Payload, p) {
			t.Fatalf("%d bytes: %+v %v", n, f.Header, err)
		}
		if want := ws.HeaderSize(f.Header) + n; len(b)-6 != want {
			t.Fatalf("%d bytes: frame of %d bytes, want %d", n, len(b)-6, want)
		}
	}
}

// clientFrames encodes p as a client would: masked, in fragments of the
// given sizes, with a ping after the first.
func clientFrames(p []byte, sizes []int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	var out bytes.Buffer
	op := ws.OpText
	for i := 0; ; i++ {
		n := len(p)
		if i < len(sizes) && sizes[i] < n {
			n = sizes[i]
		}
		f := ws.NewFrame(op, n == len(p), bytes.Clone(p[:n]))
		binary.LittleEndian.PutUint32(f.Header.Mask[:], r.Uint32())
		f.Header.Masked = true
		ws.Cipher(f.Payload, f.Header.Mask, 0)
		ws.WriteFrame(&out, f)
		p = p[n:]
		if i == 0 {
			ws.WriteFrame(&out, ws.MaskFrameInPlace(ws.NewPingFrame([]byte("p"))))
		}
		if len(p) == 0 {
			return out.Bytes()
		}
		op = ws.OpContinuation
	}
}

func FuzzReadMessage(f *testing.F) {
	f.Add(clientFrames(helloJSON, []int{3, 4}, 1), 4096)
	f.Add(clientFrames(bytes.Repeat([]byte("a"), 300), []int{200}, 2), 256)
	f.Add([]byte{0x81, 0x80 | 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, 4096)
	f.Add([]byte{0x88, 0x80, 1, 2, 3, 4}, 4096)
	f.Fuzz(func(t *testing.T, in []byte, limit int) {
		limit = 1 + abs(limit)%(1<<16)
		r := &msgReader{br: bufio.NewReaderSize(bytes.NewReader(in), 64)}
		for {
			pongs := 0
			op, b, err := r.readMessage(nil, limit, func(p []byte) bool {
				if len(p) > ws.MaxControlFramePayloadSize {
					t.Fatalf("pong of %d bytes", len(p))
				}
				pongs++
				return pongs < 100
			})
			if err != nil {
				return
			}
			if len(b) > limit || (op != ws.OpText && op != ws.OpBinary) {
				t.Fatalf("message of %d bytes (limit %d), opcode %v", len(b), limit, op)
			}
		}
	})
}

// Whatever the fragmentation, what the client meant is what is read.
func FuzzReadMessageRoundTrip(f *testing.F) {
	f.Add([]byte("hello"), uint16(2), uint16(1), uint64(1))
	f.Fuzz(func(t *testing.T, p []byte, a, b uint16, seed uint64) {
		in := clientFrames(p, []int{int(a), int(b)}, seed)
		r := &msgReader{br: bufio.NewReaderSize(bytes.NewReader(in), 64)}
		pongs := 0
		op, got, err := r.readMessage(nil, len(p), func([]byte) bool { pongs++; return true })
		if err != nil || op != ws.OpText || !bytes.Equal(got, p) {
			t.Fatalf("read %q %v %v, want %q", got, op, err, p)
		}
		if len(p) > int(a) && pongs != 1 {
			t.Fatalf("%d pongs, want 1", pongs)
		}
	})
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
