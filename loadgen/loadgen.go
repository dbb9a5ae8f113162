// Package loadgen drives many WebSocket connections at a tracker with a
// synthetic viewer message mix, in either protocol (peercdn's native one or
// WebTorrent's), and measures what comes back: responses per second,
// handshake and offer->answer latency, and messages the tracker lost.
package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Protocols and modes.
const (
	Native     = "native"
	WebTorrent = "webtorrent"

	// Compat is aquatic_ws's load test mix: closed loop, each connection
	// sends its next request when any message arrives; an announce carries
	// Offers offers for an info hash drawn from a skewed distribution, and a
	// received offer is answered in the next request.
	Compat = "compat"
	// Realistic is viewers: open loop, each connection joins one swarm in
	// the join storm with Offers offers, answers every offer it gets, and
	// announces again every Interval.
	Realistic = "realistic"
)

// Config says what load to generate.
type Config struct {
	URL      string        // ws://host:port/ws (native) or /announce (WebTorrent)
	Protocol string        // Native or WebTorrent
	Mode     string        // Compat or Realistic
	Conns    int           // connections to hold
	Storm    time.Duration // connections open evenly over this (the join storm)
	Duration time.Duration // the measured window, after the storm
	Drain    time.Duration // after the window, read this long before counting losses

	Hashes   int           // swarms (info hashes) to pick from, gamma-skewed
	Offers   int           // offers per announce
	SDPBytes int           // size of each offer and answer SDP
	Interval time.Duration // realistic: announce period

	// SourceNet and PerSource spread connections over loopback source
	// addresses 127.SourceNet.x.y, PerSource per address: past the
	// ephemeral-port limit of one address and the tracker's per-IP limits.
	SourceNet byte
	PerSource int
	Origin    string // Origin header, if any
	// Seed names the info hashes; processes with one seed share swarms.
	Seed uint64
}

// Defaults fills unset fields for the mode.
func (c *Config) Defaults() {
	if c.Protocol == "" {
		c.Protocol = WebTorrent
	}
	if c.Mode == "" {
		c.Mode = Compat
	}
	compat := c.Mode == Compat
	set := func(p *int, compatV, realV int) {
		if *p == 0 {
			*p = realV
			if compat {
				*p = compatV
			}
		}
	}
	set(&c.Conns, 1000, 10000)
	set(&c.Hashes, 10000, 1000)
	set(&c.Offers, 10, 5)
	set(&c.SDPBytes, 120, 900)
	if c.PerSource == 0 {
		c.PerSource = 16
	}
	if c.SourceNet == 0 {
		c.SourceNet = 10
	}
	if c.Duration == 0 {
		c.Duration = 30 * time.Second
	}
	if c.Storm == 0 {
		c.Storm = 5 * time.Second
	}
	if c.Interval == 0 {
		c.Interval = 120 * time.Second
	}
	if c.Drain == 0 {
		c.Drain = 2 * time.Second
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
}

func (c *Config) validate() error {
	switch {
	case c.Protocol != Native && c.Protocol != WebTorrent:
		return fmt.Errorf("protocol %q: want native or webtorrent", c.Protocol)
	case c.Mode != Compat && c.Mode != Realistic:
		return fmt.Errorf("mode %q: want compat or realistic", c.Mode)
	case c.Conns < 1 || c.Hashes < 1 || c.Offers < 0 || c.SDPBytes < 0 || c.PerSource < 1:
		return errors.New("conns, hashes and per-source must be positive")
	case !strings.HasPrefix(c.URL, "ws://") && !strings.HasPrefix(c.URL, "wss://"):
		return fmt.Errorf("url %q: want ws:// or wss://", c.URL)
	}
	return nil
}

// Result is what one run measured. Child processes print theirs as JSON
// and the parent adds them up with Merge.
type Result struct {
	Protocol string  `json:"protocol"`
	Mode     string  `json:"mode"`
	Conns    int     `json:"conns"`   // asked for
	Opened   int64   `json:"opened"`  // handshakes completed
	Failed   int64   `json:"failed"`  // connections that could not open
	Lost     int64   `json:"lost"`    // open connections the server closed or broke
	Seconds  float64 `json:"seconds"` // the measured window

	Requests  int64            `json:"requests"`  // in the window
	Responses map[string]int64 `json:"responses"` // read in the window, by type
	// ResponsesPerSec is every message read in the window, per second.
	ResponsesPerSec float64 `json:"responsesPerSec"`

	// Over the whole run, storm included.
	OffersSent      int64 `json:"offersSent"`
	OffersExpected  int64 `json:"offersExpected"` // the tracker should have relayed
	OffersReceived  int64 `json:"offersReceived"`
	AnswersSent     int64 `json:"answersSent"`
	AnswersReceived int64 `json:"answersReceived"`
	Errors          int64 `json:"errors"` // error or failure responses
	// Dropped is offers and answers that should have arrived and did not.
	Dropped int64 `json:"dropped"`

	// P50Ms and P99Ms: offer->answer in the realistic mode (announce sent
	// to the answer back, through a peer that answers at once); request to
	// the next message in the compat mode.
	P50Ms float64 `json:"p50Ms"`
	P99Ms float64 `json:"p99Ms"`
	// Handshake: connect and upgrade, and in the realistic mode until the
	// first answer (welcome, or the first announce's response).
	HandshakeP50Ms float64 `json:"handshakeP50Ms"`
	HandshakeP99Ms float64 `json:"handshakeP99Ms"`
	Latency        *Hist   `json:"latency"`
	Handshake      *Hist   `json:"handshake"`

	Server *Usage `json:"server,omitempty"`
}

// Merge adds a child's result into r.
func (r *Result) Merge(o *Result) {
	r.Conns += o.Conns
	r.Opened += o.Opened
	r.Failed += o.Failed
	r.Lost += o.Lost
	r.Seconds = max(r.Seconds, o.Seconds)
	r.Requests += o.Requests
	if r.Responses == nil {
		r.Responses = map[string]int64{}
	}
	for k, v := range o.Responses {
		r.Responses[k] += v
	}
	r.OffersSent += o.OffersSent
	r.OffersExpected += o.OffersExpected
	r.OffersReceived += o.OffersReceived
	r.AnswersSent += o.AnswersSent
	r.AnswersReceived += o.AnswersReceived
	r.Errors += o.Errors
	if r.Latency == nil {
		r.Latency, r.Handshake = &Hist{}, &Hist{}
	}
	r.Latency.Add(o.Latency)
	r.Handshake.Add(o.Handshake)
	r.finish()
}

// finish derives the totals and percentiles from the counters.
func (r *Result) finish() {
	var n int64
	for _, v := range r.Responses {
		n += v
	}
	if r.Seconds > 0 {
		r.ResponsesPerSec = float64(n) / r.Seconds
	}
	r.Dropped = max(r.OffersExpected-r.OffersReceived, 0) + max(r.AnswersSent-r.AnswersReceived, 0)
	r.P50Ms, r.P99Ms = r.Latency.QuantileMs(0.5), r.Latency.QuantileMs(0.99)
	r.HandshakeP50Ms, r.HandshakeP99Ms = r.Handshake.QuantileMs(0.5), r.Handshake.QuantileMs(0.99)
}

// counters are the run's shared tallies.
type counters struct {
	opened, failed, lost                   atomic.Int64
	requests                               atomic.Int64
	offersSent, offersExpected, offersRecv atomic.Int64
	answersSent, answersRecv               atomic.Int64
	errors                                 atomic.Int64
	byType                                 sync.Map // string -> *atomic.Int64
}

func (c *counters) got(typ string) {
	v, ok := c.byType.Load(typ)
	if !ok {
		v, _ = c.byType.LoadOrStore(typ, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(1)
}

func (c *counters) snapshot() map[string]int64 {
	m := map[string]int64{}
	c.byType.Range(func(k, v any) bool {
		m[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return m
}

// gen is one run.
type gen struct {
	cfg    Config
	c      counters
	lat    Hist
	hs     Hist
	picker *hashPicker
	stop   chan struct{} // closed at the end of the window: no new requests
	// open is closed once every connection has opened or failed: compat
	// connections wait for it, so the flood meets all of them open.
	open    chan struct{}
	clients []*http.Client
	sdp     string
	// offerJSON and answerJSON are the WebTorrent offer and answer objects.
	offerJSON, answerJSON []byte
}

// Run generates the load in this process and returns what it measured.
// onWindow, if set, is called when the measured window starts and ends.
func Run(ctx context.Context, cfg Config, onWindow func(start bool)) (*Result, error) {
	cfg.Defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	g := &gen{cfg: cfg, picker: newHashPicker(cfg.Seed, cfg.Hashes), stop: make(chan struct{}), open: make(chan struct{})}
	g.sdp = fakeSDP(cfg.SDPBytes)
	g.offerJSON, _ = json.Marshal(map[string]string{"type": "offer", "sdp": g.sdp})
	g.answerJSON, _ = json.Marshal(map[string]string{"type": "answer", "sdp": g.sdp})
	g.clients = make([]*http.Client, (cfg.Conns+cfg.PerSource-1)/cfg.PerSource)
	for i := range g.clients {
		// 127.SourceNet.x.y with y in 1..250: every address is on lo.
		ip := net.IPv4(127, cfg.SourceNet, byte(i/250), byte(1+i%250))
		if i/250 > 255 {
			return nil, errors.New("too many source addresses: raise per-source")
		}
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 30 * time.Second}
		g.clients[i] = &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i := range cfg.Conns {
		at := start.Add(time.Duration(float64(cfg.Storm) * float64(i) / float64(cfg.Conns)))
		if !SleepUntil(ctx, at) {
			return nil, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.conn(runCtx, i)
		}()
	}
	go func() {
		for g.c.opened.Load()+g.c.failed.Load() < int64(cfg.Conns) && runCtx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		close(g.open)
	}()
	// The window starts a second after the storm (compat: after every
	// connection is open), and ends Duration later.
	if !SleepUntil(ctx, start.Add(cfg.Storm+time.Second)) {
		return nil, ctx.Err()
	}
	if cfg.Mode == Compat {
		<-g.open
		time.Sleep(time.Second)
	}
	if onWindow != nil {
		onWindow(true)
	}
	before, reqBefore := g.c.snapshot(), g.c.requests.Load()
	w0 := time.Now()
	if !SleepUntil(ctx, w0.Add(cfg.Duration)) {
		return nil, ctx.Err()
	}
	after, reqAfter := g.c.snapshot(), g.c.requests.Load()
	secs := time.Since(w0).Seconds()
	if onWindow != nil {
		onWindow(false)
	}
	close(g.stop)
	time.Sleep(cfg.Drain)
	cancel()
	wg.Wait()

	r := &Result{
		Protocol: cfg.Protocol, Mode: cfg.Mode, Conns: cfg.Conns, Seconds: secs,
		Opened: g.c.opened.Load(), Failed: g.c.failed.Load(), Lost: g.c.lost.Load(),
		Requests: reqAfter - reqBefore, Responses: map[string]int64{},
		OffersSent: g.c.offersSent.Load(), OffersExpected: g.c.offersExpected.Load(),
		OffersReceived: g.c.offersRecv.Load(), AnswersSent: g.c.answersSent.Load(),
		AnswersReceived: g.c.answersRecv.Load(), Errors: g.c.errors.Load(),
		Latency: &g.lat, Handshake: &g.hs,
	}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			r.Responses[k] = d
		}
	}
	r.finish()
	return r, nil
}

// SleepUntil waits until t; false if ctx ends first.
func SleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// conn runs connection i until the run ends.
func (g *gen) conn(ctx context.Context, i int) {
	t0 := time.Now()
	ws, _, err := websocket.Dial(ctx, g.cfg.URL, &websocket.DialOptions{
		HTTPClient: g.clients[i/g.cfg.PerSource],
		HTTPHeader: originHeader(g.cfg.Origin),
	})
	if err != nil {
		if ctx.Err() == nil {
			g.c.failed.Add(1)
		}
		return
	}
	ws.SetReadLimit(1 << 20)
	defer ws.CloseNow()
	g.c.opened.Add(1)
	if g.cfg.Mode == Compat {
		// Compat connections wait for each other before their first
		// request: their handshake ends at the upgrade.
		g.hs.Record(time.Since(t0))
	}
	rng := rand.New(rand.NewPCG(uint64(i), uint64(t0.UnixNano())))
	var lost bool
	if g.cfg.Protocol == WebTorrent {
		c := &wtClient{}
		c.init(g, ws, rng, t0)
		lost = c.run(ctx)
	} else {
		c := &nativeClient{}
		c.init(g, ws, rng, t0)
		lost = c.run(ctx)
	}
	if lost && ctx.Err() == nil {
		g.c.lost.Add(1)
	}
}

func originHeader(o string) http.Header {
	if o == "" {
		return nil
	}
	return http.Header{"Origin": {o}}
}

func (g *gen) stopped() bool {
	select {
	case <-g.stop:
		return true
	default:
		return false
	}
}

// hashPicker draws swarm indexes as aquatic_ws's load test does: from a
// gamma distribution (shape 0.2, scale 100), so a few swarms are large and
// most are small.
type hashPicker struct {
	n     int
	names []string
}

func newHashPicker(seed uint64, n int) *hashPicker {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b9))
	p := &hashPicker{n: n, names: make([]string, n)}
	for i := range p.names {
		p.names[i] = randID(rng)
	}
	return p
}

func (p *hashPicker) pick(rng *rand.Rand) int {
	x := gamma(rng, 0.2, 100)
	f := (min(x, 101) - 1) / 100
	return min(max(int(f*float64(p.n-1)), 0), p.n-1)
}

// gamma samples Gamma(shape, scale) by Marsaglia and Tsang, with the
// shape<1 boost.
func gamma(rng *rand.Rand, shape, scale float64) float64 {
	if shape < 1 {
		u := rng.Float64()
		return gamma(rng, shape+1, scale) * math.Pow(u, 1/shape)
	}
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if math.Log(u) < 0.5*x*x+d-d*v+d*math.Log(v) {
			return d * v * scale
		}
	}
}

const idChars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// randID is a 20-character id: a valid WebTorrent binary string.
func randID(rng *rand.Rand) string {
	b := make([]byte, 20)
	for i := range b {
		b[i] = idChars[rng.IntN(len(idChars))]
	}
	return string(b)
}

// fakeSDP is an SDP-shaped string of about n bytes.
func fakeSDP(n int) string {
	var b strings.Builder
	b.WriteString("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
		"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n" +
		"a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\na=mid:0\r\n" +
		"a=sctp-port:5000\r\n")
	for b.Len() < n {
		b.WriteString("a=candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host\r\n")
	}
	s := b.String()
	return s[:min(len(s), max(n, 0))]
}
