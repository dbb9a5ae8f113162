package tracker

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
)

// readBufSize and writeBufSize are each WebSocket's buffers. net/http
// hands a hijacked connection 4 KiB of each, which the WebSocket keeps for
// its life: 8 KiB for a viewer that sends a few hundred bytes a minute.
// Reads of payloads larger than the buffer go straight into the message;
// the write buffer holds a relayed offer (about 1.1 KiB) in one syscall.
const (
	readBufSize  = 1 << 10
	writeBufSize = 2 << 10
)

// smallBuffers gives the WebSocket upgrade connBufSize buffers instead of
// net/http's.
type smallBuffers struct{ http.ResponseWriter }

func (w smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	n := brw.Reader.Buffered()
	if n > readBufSize {
		return nc, brw, nil // more than fits: keep net/http's buffers
	}
	br := bufio.NewReaderSize(nc, readBufSize)
	if n > 0 {
		// Bytes the client sent before the upgrade finished. They must end
		// up buffered in br: the WebSocket takes what br holds and then
		// reads nc directly.
		b, _ := brw.Reader.Peek(n)
		br.Reset(io.MultiReader(bytes.NewReader(bytes.Clone(b)), nc))
		if _, err := br.Peek(n); err != nil {
			nc.Close()
			return nil, nil, err
		}
	}
	if err := brw.Writer.Flush(); err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, bufio.NewReadWriter(br, bufio.NewWriterSize(nc, writeBufSize)), nil
}
