package wsconn

import (
	"bufio"
	"errors"
	"io"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// The tracker's side of WebSocket framing (RFC 6455), on gobwas/ws's
// handshake, header codec and unmasking. A general WebSocket library keeps
// a connection object, buffers and locks alive for each socket and takes
// them on every message; a tracker holds tens of thousands of sockets that
// are idle almost all the time, and relays small messages between them. So
// here a socket holds no reading state while idle (msgReader is pooled),
// and the writer frames its whole queue into one buffer for one syscall.

// readBufSize is a reading goroutine's buffer: it holds only while the
// connection reads, so it can be large enough for several messages a read.
const readBufSize = 4 << 10

// msgReader reads one client's frames, while its goroutine runs.
type msgReader struct {
	br  *bufio.Reader
	hdr [ws.MaxHeaderSize - 2]byte
	ctl [ws.MaxControlFramePayloadSize]byte
}

var readerPool = sync.Pool{New: func() any {
	return &msgReader{br: bufio.NewReaderSize(nil, readBufSize)}
}}

// frameError fails the connection with a close code: the client broke the
// protocol or a limit.
type frameError struct {
	code   ws.StatusCode
	reason string
}

func (e *frameError) Error() string { return e.reason }

// clientClosed is the client's close frame.
type clientClosed struct{ code ws.StatusCode }

func (e *clientClosed) Error() string { return "client closed the connection" }

var (
	errTooBig        = &frameError{ws.StatusMessageTooBig, "message over max_message_bytes"}
	errTooFragmented = &frameError{ws.StatusPolicyViolation, "message in over 64 fragments"}
	// errPingFlood ends reading a client closed for pinging past the rate:
	// its pings are not read one by one while it is being closed.
	errPingFlood = errors.New("closed for pinging too fast")
)

// MaxFragments bounds the frames of one message: browsers send each
// message whole, and a message of endless empty fragments would never
// reach the rate limiter, which counts messages.
const MaxFragments = 64

// readMessage reads frames until one whole data message has been appended
// to buf, and returns it with its opcode (text or binary). A message over
// limit bytes, in one frame or in fragments, is refused before its payload
// is read. Pings are answered through pong; pongs are ignored; a close
// frame ends it with *clientClosed. pong returning false ends it with
// errPingFlood.
func (r *msgReader) readMessage(buf []byte, limit int, pong func(payload []byte) bool) (ws.OpCode, []byte, error) {
	var op ws.OpCode // of the message being assembled; 0 before its first frame
	state := ws.StateServerSide
	fragments := 0
	for {
		h, err := ws.ReadHeaderBuffer(r.br, r.hdr[:])
		if err != nil {
			if errors.Is(err, ws.ErrHeaderLengthMSB) || errors.Is(err, ws.ErrHeaderLengthUnexpected) {
				return 0, buf, &frameError{ws.StatusProtocolError, err.Error()}
			}
			return 0, buf, err
		}
		if err := ws.CheckHeader(h, state); err != nil {
			return 0, buf, &frameError{ws.StatusProtocolError, err.Error()}
		}
		if h.OpCode.IsControl() {
			p := r.ctl[:h.Length] // CheckHeader bounds it by 125
			if _, err := io.ReadFull(r.br, p); err != nil {
				return 0, buf, err
			}
			ws.Cipher(p, h.Mask, 0)
			switch h.OpCode {
			case ws.OpPing:
				if !pong(p) {
					return 0, buf, errPingFlood
				}
			case ws.OpClose:
				if err := checkCloseFrame(p); err != nil {
					return 0, buf, err
				}
				code, _ := ws.ParseCloseFrameDataUnsafe(p)
				return 0, buf, &clientClosed{code}
			}
			continue
		}
		if h.Length > int64(limit-len(buf)) {
			return 0, buf, errTooBig
		}
		if fragments++; fragments > MaxFragments {
			return 0, buf, errTooFragmented
		}
		if op == 0 {
			op = h.OpCode
			state = state.Set(ws.StateFragmented)
		}
		n := len(buf)
		if need := n + int(h.Length); need > cap(buf) {
			grown := make([]byte, n, max(need, 2*cap(buf)))
			copy(grown, buf)
			buf = grown
		}
		buf = buf[:n+int(h.Length)]
		if _, err := io.ReadFull(r.br, buf[n:]); err != nil {
			return 0, buf, err
		}
		ws.Cipher(buf[n:], h.Mask, 0)
		if h.Fin {
			return op, buf, nil
		}
	}
}

// checkCloseFrame holds a client's close frame to RFC 6455 section 5.5.1 and
// 7.4: empty, or a code a peer may send (1000-1003, 1007-1014, 3000-4999)
// and a UTF-8 reason. Anything else is a protocol error (1002), or 1007
// for the reason.
func checkCloseFrame(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if len(p) == 1 {
		return &frameError{ws.StatusProtocolError, "close frame of one byte"}
	}
	code := int(p[0])<<8 | int(p[1])
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014, code >= 3000 && code <= 4999:
	default:
		return &frameError{ws.StatusProtocolError, "close code " + strconv.Itoa(code) + " may not be sent"}
	}
	if !utf8.Valid(p[2:]) {
		return &frameError{ws.StatusInvalidFramePayloadData, "close reason is not UTF-8"}
	}
	return nil
}

// appendFrame appends a whole server frame (unmasked) carrying p.
func appendFrame(dst []byte, op ws.OpCode, p []byte) []byte {
	b0 := 0x80 | byte(op) // FIN
	switch n := len(p); {
	case n < 126:
		dst = append(dst, b0, byte(n))
	case n <= 0xffff:
		dst = append(dst, b0, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, 127, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32),
			byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, p...)
}
