package wsconn

import (
	"bytes"
	"net"
	"net/http"
	"time"

	"github.com/gobwas/ws"
)

// Upgrade answers a WebSocket upgrade request (the caller has checked its
// origin) and takes the socket from net/http, whose 4 KiB buffers go with
// the request: a parked connection holds no buffer at all. prefix is what
// the client sent along with its request, to pass to New.
func Upgrade(w http.ResponseWriter, r *http.Request, timeout time.Duration) (nc net.Conn, prefix []byte, err error) {
	nc, rw, _, err := ws.HTTPUpgrader{Timeout: timeout}.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			nc.Close()
		}
		return nil, nil, err
	}
	if n := rw.Reader.Buffered(); n > 0 {
		b, _ := rw.Reader.Peek(n)
		prefix = bytes.Clone(b)
	}
	return nc, prefix, nil
}

// GoAway closes an upgraded socket that will not be served (its node is
// draining) with 1001, waiting at most a second for it to be written.
func GoAway(nc net.Conn) {
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write(ws.CompiledCloseGoingAway)
	nc.Close()
}
