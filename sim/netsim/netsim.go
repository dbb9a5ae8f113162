// Package netsim gives simulated viewers real-world links in process: each
// viewer's WebRTC runs on a pion virtual network (vnet) behind its own NAT
// router, with delay, jitter, loss and capped links, and its CDN requests
// cross a modelled link of the same viewer (round trip per request, a rate
// for the body), so that "the CDN would have been faster" is measured.
package netsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/pion/logging"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/vnet"
	"golang.org/x/time/rate"

	"github.com/peercdn/peercdn/tracker/stunserver"
)

// NAT is a viewer's router.
type NAT string

const (
	// Cone maps each local port to one public port for every destination
	// and lets in replies from any address and port it sent to (port
	// restricted): home routers.
	Cone NAT = "cone"
	// Symmetric maps every destination to its own port: STUN's answer is
	// useless to peers, and two symmetric viewers never meet directly.
	Symmetric NAT = "symmetric"
)

// Link is one viewer's connection to the internet.
type Link struct {
	RTT      time.Duration `json:"rtt"`    // to the core; two viewers see about the mean of theirs
	Jitter   time.Duration `json:"jitter"` // added per packet, up to
	Loss     float64       `json:"loss"`   // each way, 0..1
	UpKbps   int           `json:"upKbps"`
	DownKbps int           `json:"downKbps"`
	NAT      NAT           `json:"nat"`
	// CDNKbps caps each CDN response (a slow or distant CDN); 0: the
	// downlink alone.
	CDNKbps int `json:"cdnKbps,omitempty"`
}

func (l Link) String() string {
	return fmt.Sprintf("rtt %v, up %d kbit/s, down %d kbit/s, loss %.1f%%, %s NAT", l.RTT, l.UpKbps, l.DownKbps, 100*l.Loss, l.NAT)
}

// World is one simulated internet: a core router with a STUN server on it,
// and a router per viewer.
type World struct {
	core *vnet.Router
	stun net.PacketConn

	mu      sync.Mutex
	viewers int
	closers []func()
}

// STUNAddr is the world's STUN server.
const STUNAddr = "203.0.113.1:3478"

// maxViewers: the core is one /24 (addresses .10 and up are viewers').
const maxViewers = 240

// New starts a world. Close it when done.
func New() (*World, error) {
	quiet := logging.NewDefaultLoggerFactory()
	quiet.DefaultLogLevel = logging.LogLevelDisabled
	core, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "203.0.113.0/24", LoggerFactory: quiet, QueueSize: 100000})
	if err != nil {
		return nil, err
	}
	w := &World{core: core}
	sn, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"203.0.113.1"}})
	if err != nil {
		return nil, err
	}
	if err := core.AddNet(sn); err != nil {
		return nil, err
	}
	if err := core.Start(); err != nil {
		return nil, err
	}
	w.stun, err = sn.ListenPacket("udp4", STUNAddr)
	if err != nil {
		core.Stop()
		return nil, err
	}
	go stunserver.New(w.stun, stunserver.Limits{PerIPRate: 1000, PerIPBurst: 1000}, nil).Serve(context.Background())
	return w, nil
}

// Close stops every router.
func (w *World) Close() {
	w.stun.Close()
	w.mu.Lock()
	closers := w.closers
	w.mu.Unlock()
	for _, c := range closers {
		c()
	}
	w.core.Stop()
}

// Viewer adds a viewer on link l and returns the network its WebRTC runs
// on: its sockets send through the link's uplink.
func (w *World) Viewer(l Link, seed uint64) (transport.Net, error) {
	w.mu.Lock()
	if w.viewers >= maxViewers {
		w.mu.Unlock()
		return nil, fmt.Errorf("netsim: at most %d viewers", maxViewers)
	}
	w.viewers++
	k := w.viewers
	w.mu.Unlock()
	nat := &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrPortDependent,
		MappingLifeTime: 5 * time.Minute}
	if l.NAT == Symmetric {
		nat.MappingBehavior = vnet.EndpointAddrPortDependent
	}
	quiet := logging.NewDefaultLoggerFactory()
	quiet.DefaultLogLevel = logging.LogLevelDisabled
	// Each of two viewers' routers delays a packet by a quarter of its
	// viewer's RTT: between them, a round trip is the mean of theirs.
	// Jitter is not the router's MaxJitter: vnet sleeps for it holding the
	// router's lock, which stalls the core router's deliveries to that
	// viewer, and so every viewer, for as long (at 200 viewers the whole
	// world crawled and ICE timed out). It is a delay on the viewer's own
	// inbound side instead (see jitter).
	r, err := vnet.NewRouter(&vnet.RouterConfig{
		CIDR: "198.51.100.0/24", StaticIPs: []string{fmt.Sprintf("203.0.113.%d", 9+k)},
		NATType: nat, MinDelay: l.RTT / 4, LoggerFactory: quiet, QueueSize: 10000,
	})
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, uint64(k)))
	var rngMu sync.Mutex
	r.AddChunkFilter(func(c vnet.Chunk) bool {
		rngMu.Lock()
		lost := l.Loss > 0 && rng.Float64() < l.Loss
		rngMu.Unlock()
		return !lost
	})
	if err := w.core.AddRouter(r); err != nil {
		return nil, err
	}
	n, err := vnet.NewNet(&vnet.NetConfig{})
	if err != nil {
		return nil, err
	}
	var nic vnet.NIC = n
	if l.DownKbps > 0 {
		// Downlink: a queue at the viewer's side, as an access link's
		// buffer; 100 ms of it before drops.
		bps := l.DownKbps * 1000
		q, err := vnet.NewQueue(n, vnet.NewTBFQueue(bps, 16<<10, int64(bps/8/10+16<<10)))
		if err != nil {
			return nil, err
		}
		nic = q
		w.mu.Lock()
		w.closers = append(w.closers, func() { q.Close() })
		w.mu.Unlock()
	}
	if l.Jitter > 0 {
		df, stop, err := jitter(nic, l.Jitter, rng.Uint64())
		if err != nil {
			return nil, err
		}
		nic = df
		w.mu.Lock()
		w.closers = append(w.closers, stop)
		w.mu.Unlock()
	}
	if err := r.AddNet(nic); err != nil {
		return nil, err
	}
	if err := r.Start(); err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.closers = append(w.closers, func() { r.Stop() })
	w.mu.Unlock()
	up := newUplink(l.UpKbps)
	if up == nil {
		return n, nil
	}
	w.mu.Lock()
	w.closers = append(w.closers, up.close)
	w.mu.Unlock()
	return shapedNet{Net: n, up: up}, nil
}

// jitterStep is how often a link's queueing delay changes.
const jitterStep = 10 * time.Millisecond

// jitter delays what reaches nic by a queueing delay drawn anew, up to most,
// every jitterStep: packets keep their order (a delay filter is first in,
// first out), as on a real access link, and no router lock is held while
// they wait.
func jitter(nic vnet.NIC, most time.Duration, seed uint64) (vnet.NIC, func(), error) {
	df, err := vnet.NewDelayFilter(nic)
	if err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() {
		rng := rand.New(rand.NewPCG(seed, 1))
		t := time.NewTicker(jitterStep)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				df.SetDelay(time.Duration(rng.Int64N(int64(most))))
			}
		}
	}()
	return df, func() { close(done); df.Close() }, nil
}

// CDNClient is an HTTP client whose requests cross l: a round trip before
// the response starts (the connection is kept alive), then the body at the
// downlink's rate or CDNKbps, whichever is lower. base carries the bytes
// (the CDN is a real server on loopback); nil gives the viewer a transport
// of its own that keeps up to six connections alive, as a browser does.
// (http.DefaultTransport, shared, keeps two for the host: with hundreds of
// viewers nearly every load dialled a new connection.)
func CDNClient(l Link, base http.RoundTripper) *http.Client {
	if base == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 6
		base = tr
	}
	kbps := l.DownKbps
	if l.CDNKbps > 0 && (kbps == 0 || l.CDNKbps < kbps) {
		kbps = l.CDNKbps
	}
	var down *rate.Limiter
	if kbps > 0 {
		bytes := kbps * 1000 / 8
		down = rate.NewLimiter(rate.Limit(bytes), max(bytes/20, 16<<10))
	}
	return &http.Client{Transport: &linkTransport{base: base, rtt: l.RTT, jitter: l.Jitter, down: down}}
}

type linkTransport struct {
	base   http.RoundTripper
	rtt    time.Duration
	jitter time.Duration
	down   *rate.Limiter // shared by the viewer's responses
}

func (t *linkTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	d := t.rtt
	if t.jitter > 0 {
		d += rand.N(t.jitter)
	}
	if err := sleep(req.Context(), d); err != nil {
		return nil, err
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil || t.down == nil {
		return resp, err
	}
	resp.Body = &pacedBody{ctx: req.Context(), r: resp.Body, l: t.down}
	return resp, nil
}

// pacedBody delivers a body at its link's rate.
type pacedBody struct {
	ctx context.Context
	r   io.ReadCloser
	l   *rate.Limiter
}

func (b *pacedBody) Read(p []byte) (int, error) {
	if len(p) > b.l.Burst() {
		p = p[:b.l.Burst()]
	}
	n, err := b.r.Read(p)
	if n > 0 {
		if werr := b.l.WaitN(b.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

func (b *pacedBody) Close() error { return b.r.Close() }

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var errNoPreset = errors.New("netsim: unknown network preset")
