package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peercdn/peercdn/internal/trackertest"
	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker"
)

// testOrigin serves /seg/N: segSize deterministic bytes per N, with ranges,
// counting the bytes it sends.
type testOrigin struct {
	*httptest.Server
	sent atomic.Int64
}

const segSize = 300 << 10

func segment(n uint64) []byte {
	b := make([]byte, segSize)
	for i := range b {
		b[i] = byte(uint64(i)*31 + n*7)
	}
	return b
}

func startOrigin(t testing.TB) *testOrigin { return startOriginAfter(t, 0) }

// startOriginAfter is startOrigin for a slow CDN: each response starts
// after delay.
func startOriginAfter(t testing.TB, delay time.Duration) *testOrigin {
	o := &testOrigin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseUint(strings.TrimPrefix(r.URL.Path, "/seg/"), 10, 64)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		time.Sleep(delay)
		http.ServeContent(&countWriter{w, &o.sent}, r, "seg", time.Time{}, bytes.NewReader(segment(n)))
	}))
	t.Cleanup(o.Close)
	return o
}

type countWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func startTracker(t testing.TB) string { return startTrackerWith(t, nil) }

// startTrackerWith starts a tracker whose configuration mutate adjusts.
func startTrackerWith(t testing.TB, mutate func(*tracker.Config)) string {
	return trackertest.Start(t, mutate, nil).WS()
}

// trackerHTTP is the HTTP base of a tracker's signaling URL.
func trackerHTTP(wsURL string) string { return trackertest.HTTPBase(wsURL) }

// trackerStats reads the tracker's /stats.json.
func trackerStats(t testing.TB, wsURL string) tracker.Stats {
	t.Helper()
	return trackertest.Stats(t, trackerHTTP(wsURL), "")
}

func startAgent(t testing.TB, trackerURL string, mutate func(*Config)) *Agent {
	cfg := DefaultConfig(trackerURL)
	cfg.LoopbackOnly = true
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

var testSwarm = signaling.Swarm{Content: "/test.m3u8", Rendition: "720p"}

// req asks for segment n of the test origin (served at /seg/n); its Seq is
// the segment's id (sid), as the tracker checks it against the URL.
func req(o *testOrigin, n uint64, in time.Duration) Request {
	return Request{Swarm: testSwarm, Seq: sid(o.URL, n), URL: fmt.Sprintf("%s/seg/%d", o.URL, n), Deadline: time.Now().Add(in)}
}

// sid is the id of segment n served at base/seg/n.
func sid(base string, n uint64) uint64 {
	return signaling.SegmentID(fmt.Sprintf("%s/seg/%d", base, n), nil)
}

// waitPeers waits until every agent has n connected peers.
// electedSeq is the first segment of o from from on that a is elected
// to seed between itself and b: a ranks ahead.
func electedSeq(o *testOrigin, from uint64, a, b *Agent) uint64 {
	for rank(a.selfID(), sid(o.URL, from)) > rank(b.selfID(), sid(o.URL, from)) {
		from++
	}
	return from
}

func waitPeers(t testing.TB, n int, agents ...*Agent) {
	waitPeersWithin(t, 10*time.Second, n, agents...)
}

// waitPeersWithin is waitPeers with its own deadline.
func waitPeersWithin(t testing.TB, within time.Duration, n int, agents ...*Agent) {
	deadline := time.Now().Add(within)
	for _, a := range agents {
		a.Join(testSwarm)
	}
	for {
		ok := true
		for _, a := range agents {
			if a.Stats().Peers < n {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for i, a := range agents {
				t.Logf("agent %d: %+v", i, a.Stats())
			}
			t.Fatalf("peers did not connect")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSegmentTravelsBetweenPeers(t *testing.T) {
	o, tr := startOrigin(t), startTracker(t)
	a, b := startAgent(t, tr, nil), startAgent(t, tr, nil)
	waitPeers(t, 1, a, b)
	ctx := context.Background()

	// Both ask for the same segment with time to spare: one fetches it from
	// the CDN, the other gets it from that peer.
	type out struct {
		r   Result
		err error
	}
	ra, rb := make(chan out, 1), make(chan out, 1)
	go func() { r, err := a.Load(ctx, req(o, 1, 5*time.Second)); ra <- out{r, err} }()
	go func() { r, err := b.Load(ctx, req(o, 1, 5*time.Second)); rb <- out{r, err} }()
	xa, xb := <-ra, <-rb
	if xa.err != nil || xb.err != nil {
		t.Fatal(xa.err, xb.err)
	}
	for _, x := range []out{xa, xb} {
		if !bytes.Equal(x.r.Data, segment(1)) {
			t.Fatalf("%s bytes differ from the origin's", x.r.Source)
		}
	}
	sources := map[Source]int{xa.r.Source: 1}
	sources[xb.r.Source]++
	if sources[SourceCDN] != 1 || sources[SourceP2P] != 1 {
		t.Fatalf("sources %v: want one CDN fetch and one P2P", sources)
	}
	// One copy for the viewer that fetched it, one for the tracker's notary,
	// whose hash let the other take it from that viewer.
	if got := o.sent.Load(); got != 2*segSize {
		t.Fatalf("origin sent %d bytes, want two copies of the segment (%d)", got, 2*segSize)
	}
	sa, sb := a.Stats(), b.Stats()
	if sa.CDNBytes+sb.CDNBytes != segSize || sa.P2PBytes+sb.P2PBytes != segSize || sa.UploadBytes+sb.UploadBytes != segSize {
		t.Fatalf("stats a %+v b %+v", sa, sb)
	}
}

func TestStalledPeerCompletesFromCDN(t *testing.T) {
	o, tr := startOrigin(t), startTracker(t)
	// The seeder stops sending after 100 KB of every segment.
	seeder := startAgent(t, tr, func(c *Config) { c.uploadStallAfter = 100 << 10 })
	viewer := startAgent(t, tr, func(c *Config) { c.P2PStallTimeout = 300 * time.Millisecond })
	waitPeers(t, 1, seeder, viewer)
	ctx := context.Background()
	if _, err := seeder.Load(ctx, req(o, 7, 0)); err != nil {
		t.Fatal(err)
	}
	deadline := 3 * time.Second
	waitHolds(t, viewer, req(o, 7, 0))
	before := o.sent.Load()
	start := time.Now()
	r, err := viewer.Load(ctx, req(o, 7, deadline))
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > deadline {
		t.Fatalf("took %v, past the %v deadline", took, deadline)
	}
	if r.Source != SourceMixed || !bytes.Equal(r.Data, segment(7)) {
		t.Fatalf("source %s, equal %v: want the peer's head completed from the CDN", r.Source, bytes.Equal(r.Data, segment(7)))
	}
	if rest := o.sent.Load() - before; rest >= segSize {
		t.Fatalf("CDN sent %d bytes: the range request should skip what the peer sent", rest)
	}
	if w := viewer.Stats().P2PWastedBytes; w != 0 {
		t.Fatalf("%d P2P bytes counted wasted: the peer's head was played", w)
	}
}

// waitHolds waits until a peer of a's announced seq, and a trusts its hash
// (with integrity on): until then a, when elected, rightly fetches seq
// from the CDN, and the tracker's push of the hash can trail the peer's
// announcement on a busy machine.
func waitHolds(t testing.TB, a *Agent, r Request) {
	seq := r.Seq
	deadline := time.Now().Add(5 * time.Second)
	for {
		sw := a.swarmFor(&r.Swarm)
		if sw != nil && sw.best(seq, nil) != nil && a.mayTakeFromPeers(context.Background(), sw, segKey{r.Swarm, seq}, r.source()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no peer announced segment %d, or its hash is not trusted", seq)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTruncatedCDNResponseIsNotShared(t *testing.T) {
	tr := startTracker(t)
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(segSize))
		w.Write(segment(3)[:segSize/2]) // the connection ends early
	}))
	t.Cleanup(cut.Close)
	a := startAgent(t, tr, nil)
	_, err := a.Load(context.Background(), Request{Swarm: testSwarm, Seq: sid(cut.URL, 3), URL: cut.URL + "/seg/3"})
	if err == nil {
		t.Fatal("a truncated body was accepted")
	}
	if a.cache.has(segKey{testSwarm, sid(cut.URL, 3)}) {
		t.Fatal("the truncated segment is in the cache, where peers could get it")
	}
}

func TestConsumeOnlyNeverUploads(t *testing.T) {
	o, tr := startOrigin(t), startTracker(t)
	leech := startAgent(t, tr, func(c *Config) { c.ConsumeOnly = true })
	other := startAgent(t, tr, nil)
	waitPeers(t, 1, leech, other)
	ctx := context.Background()
	if _, err := leech.Load(ctx, req(o, 1, 0)); err != nil {
		t.Fatal(err)
	}
	r, err := other.Load(ctx, req(o, 1, 2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if r.Source != SourceCDN || leech.Stats().UploadBytes != 0 {
		t.Fatalf("source %s, leech uploaded %d", r.Source, leech.Stats().UploadBytes)
	}
}

func TestPeerConnectionLifetimeCap(t *testing.T) {
	tr := startTracker(t)
	a := startAgent(t, tr, func(c *Config) { c.MaxPeerConnections = 2 })
	var others []*Agent
	for range 4 {
		others = append(others, startAgent(t, tr, nil))
	}
	waitPeers(t, 1, others...)
	a.Join(testSwarm)
	time.Sleep(2 * time.Second)
	if got := a.Stats().PeerConnections; got != 2 {
		t.Fatalf("created %d peer connections, cap 2", got)
	}
}

func TestPrefetchUsesPeersOnly(t *testing.T) {
	o, tr := startOrigin(t), startTracker(t)
	seeder, viewer := startAgent(t, tr, nil), startAgent(t, tr, nil)
	waitPeers(t, 1, seeder, viewer)
	ctx := context.Background()
	if _, err := seeder.Load(ctx, req(o, 5, 0)); err != nil {
		t.Fatal(err)
	}
	waitHolds(t, viewer, req(o, 5, 0))
	r5 := req(o, 5, 0)
	for deadline := time.Now().Add(5 * time.Second); !viewer.mayTakeFromPeers(ctx, viewer.swarmFor(&r5.Swarm), segKey{r5.Swarm, r5.Seq}, r5.source()); {
		if time.Now().After(deadline) {
			t.Fatal("the tracker never vouched for segment 5's hash")
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := o.sent.Load()
	if viewer.Prefetch(ctx, req(o, 6, 0)) {
		t.Fatal("prefetched a segment no peer holds")
	}
	if !viewer.Prefetch(ctx, req(o, 5, 0)) {
		t.Fatal("prefetch of a segment a peer holds failed")
	}
	if o.sent.Load() != before {
		t.Fatalf("prefetch cost %d CDN bytes", o.sent.Load()-before)
	}
	r, err := viewer.Load(ctx, req(o, 5, 0))
	if err != nil || r.Source != SourceCache || !bytes.Equal(r.Data, segment(5)) {
		t.Fatalf("after prefetch: source %s, err %v", r.Source, err)
	}
	if viewer.Stats().Prefetched != 1 {
		t.Fatalf("stats: %+v", viewer.Stats())
	}
}

// Two viewers that meet in two swarms (video and audio renditions) are one
// peer to each other in Stats, not two.
func TestStatsCountAPeerOnceAcrossSwarms(t *testing.T) {
	tr := startTracker(t)
	a, b := startAgent(t, tr, nil), startAgent(t, tr, nil)
	audio := signaling.Swarm{Content: testSwarm.Content, Rendition: "audio"}
	a.Join(audio)
	b.Join(audio)
	waitPeers(t, 1, a, b) // and testSwarm
	deadline := time.Now().Add(10 * time.Second)
	for connectedSwarms(a) < 2 || connectedSwarms(b) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("not connected in both swarms: a %d, b %d", connectedSwarms(a), connectedSwarms(b))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pa, pb := a.Stats().Peers, b.Stats().Peers; pa != 1 || pb != 1 {
		t.Fatalf("peers a %d, b %d: want 1 each (one other viewer, in two swarms)", pa, pb)
	}
}

// connectedSwarms counts a's swarms with a connected peer.
func connectedSwarms(a *Agent) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, sw := range a.swarms {
		if sw.connectedCount() > 0 {
			n++
		}
	}
	return n
}

// TestEvictWithdrawsFromPeers: a segment evicted (it left a live playlist)
// leaves the cache and its peers stop counting on it; others stay.
func TestEvictWithdrawsFromPeers(t *testing.T) {
	o, tr := startOrigin(t), startTracker(t)
	a, b := startAgent(t, tr, nil), startAgent(t, tr, nil)
	waitPeers(t, 1, a, b)
	for _, seq := range []uint64{3, 4} {
		if _, err := a.Load(context.Background(), req(o, seq, 0)); err != nil {
			t.Fatal(err)
		}
		waitHolds(t, b, req(o, seq, 0))
	}
	a.Evict(testSwarm, sid(o.URL, 3), sid(o.URL, 99)) // 99 was never held
	if a.cache.has(segKey{testSwarm, sid(o.URL, 3)}) || !a.cache.has(segKey{testSwarm, sid(o.URL, 4)}) {
		t.Fatal("want segment 3 evicted and 4 kept")
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.swarmFor(&testSwarm).best(sid(o.URL, 3), nil) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the peer still counts on the evicted segment")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if b.swarmFor(&testSwarm).best(sid(o.URL, 4), nil) == nil {
		t.Fatal("the peer forgot segment 4, which was not evicted")
	}
}

// What the tracker is told: deltas since the last report, the player's own
// CDN bytes included (Stats leaves them out), nothing when nothing changed.
func TestUsageDeltas(t *testing.T) {
	a, err := New(DefaultConfig("ws://127.0.0.1:1/ws"))
	if err != nil {
		t.Fatal(err)
	}
	conn := a.stats.open()
	if u := a.stats.usage(conn, "k1"); u != nil {
		t.Fatalf("fresh agent reports %+v", u)
	}
	a.stats.cdn.Add(100)
	a.stats.p2p.Add(300)
	a.ReportPlayerCDN(50)
	a.ReportStall(1500 * time.Millisecond)
	if u := a.stats.usage(conn, "k2"); u == nil || *u != (signaling.Usage{CDNBytes: 150, P2PBytes: 300, StallMs: 1500}) {
		t.Fatalf("first report %+v", u)
	}
	a.stats.ack("k2")
	if u := a.stats.usage(conn, "k3"); u != nil {
		t.Fatalf("nothing new, yet %+v", u)
	}
	a.stats.up.Add(7)
	if u := a.stats.usage(conn, "k4"); u == nil || *u != (signaling.Usage{UploadBytes: 7}) {
		t.Fatalf("second report %+v", u)
	}
	if s := a.Stats(); s.CDNBytes != 100 {
		t.Fatalf("Stats counts %d CDN bytes: the player's own are the page's to count", s.CDNBytes)
	}

	// The connection breaks before k4's pong: the next report (on the next
	// connection) carries it again, with what came since; k2, acknowledged,
	// is not sent twice.
	a.stats.p2p.Add(11)
	a.stats.requeue()
	// The old connection's heartbeat, racing its end, takes nothing: had it
	// taken k4's bytes, the next connection's own k4 pong would ack them.
	if u := a.stats.usage(conn, "k4"); u != nil {
		t.Fatalf("a heartbeat of an ended connection took %+v", u)
	}
	conn = a.stats.open()
	if u := a.stats.usage(conn, "k1"); u == nil || *u != (signaling.Usage{UploadBytes: 7, P2PBytes: 11}) {
		t.Fatalf("report after a broken connection %+v, want k4's again and the 11 P2P bytes since", u)
	}
	a.stats.ack("k1")
	a.stats.requeue()
	conn = a.stats.open()
	if u := a.stats.usage(conn, "k2"); u != nil {
		t.Fatalf("acknowledged reports came back: %+v", u)
	}
	// A tracker that never answers: only the last maxUnacked reports are
	// kept to send again.
	for i := range 2 * maxUnacked {
		a.stats.up.Add(1)
		a.stats.usage(conn, fmt.Sprint("k", 10+i))
	}
	a.stats.requeue()
	conn = a.stats.open()
	if u := a.stats.usage(conn, "k99"); u == nil || u.UploadBytes != maxUnacked {
		t.Fatalf("after %d unanswered reports, %+v sent again, want the last %d", 2*maxUnacked, u, maxUnacked)
	}
}

// TestUsageReportsSurviveABrokenConnection: a report the tracker never
// got (the connection died silently under it) reaches it on the next
// connection, so the tracker's figures end up what the viewer counted.
// Before, that heartbeat's bytes were lost.
func TestUsageReportsSurviveABrokenConnection(t *testing.T) {
	wsURL := startTrackerWith(t, func(c *tracker.Config) { c.IdleTimeout = 1500 * time.Millisecond }) // pings every 500 ms
	// A TCP proxy in front of the tracker that can swallow, silently, what
	// the agent sends on the connections open now.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var open []*atomic.Bool // per connection: swallow the agent's bytes
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", strings.TrimPrefix(trackerHTTP(wsURL), "http://"))
			if err != nil {
				in.Close()
				continue
			}
			hole := new(atomic.Bool)
			mu.Lock()
			open = append(open, hole)
			mu.Unlock()
			go func() { io.Copy(in, out); in.Close() }()
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := in.Read(buf)
					if err != nil {
						out.Close()
						return
					}
					if !hole.Load() {
						out.Write(buf[:n])
					}
				}
			}()
		}
	}()
	a := startAgent(t, "ws://"+ln.Addr().String()+"/ws", nil)
	a.Join(testSwarm)
	reported := func() int64 { return trackerStats(t, wsURL).Usage.P2PBytes }
	waitFor := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for reported() != want {
			if time.Now().After(deadline) {
				t.Fatalf("the tracker counted %d P2P bytes, want %d", reported(), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	a.stats.p2p.Add(1000)
	waitFor(1000)
	// The agent's bytes now vanish: its next ping's report never arrives,
	// and the tracker, hearing nothing, closes the connection.
	mu.Lock()
	for _, h := range open {
		h.Store(true)
	}
	mu.Unlock()
	a.stats.p2p.Add(500)
	time.Sleep(time.Second) // a ping or two into the hole
	a.stats.p2p.Add(20)     // and some after
	waitFor(1520)
}

// TestABRTimingIsTheCDNs: what the player's bandwidth estimate is told
// (Result.ABR) is the CDN's time for the bytes, whatever the source: not
// the wait for a peer (which hls.js took for a slow network, holding a
// viewer at a fraction of its bandwidth), nor a cache hit's zero.
func TestABRTimingIsTheCDNs(t *testing.T) {
	const delay = 80 * time.Millisecond // the CDN's time to first byte
	o := startOriginAfter(t, delay)
	tr := startTracker(t)
	// a uploads nothing: b, which does, is elected for every segment, and
	// a, asking first, waits for b's copy rather than taking over.
	a, b := startAgent(t, tr, func(c *Config) { c.ConsumeOnly = true }), startAgent(t, tr, nil)
	waitPeers(t, 1, a, b)
	ctx := context.Background()
	load := func(ag *Agent, seq uint64, in time.Duration) Result {
		t.Helper()
		r, err := ag.Load(ctx, req(o, seq, in))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	// From the CDN (no time to wait for peers): that fetch's own times.
	for i, ag := range []*Agent{a, b} {
		r := load(ag, uint64(10+i), 0)
		if r.Source != SourceCDN || r.ABRFirstByte < delay || r.ABR < r.ABRFirstByte || r.ABR > r.Duration {
			t.Fatalf("CDN load: source %s, ABR %v first byte %v, took %v", r.Source, r.ABR, r.ABRFirstByte, r.Duration)
		}
	}
	// From the cache: no bytes moved, but the player is told what the CDN
	// would take, not an infinite rate.
	if r := load(a, 10, time.Second); r.Source != SourceCache || r.ABRFirstByte < delay || r.ABR < delay {
		t.Fatalf("cache hit: source %s, ABR %v first byte %v", r.Source, r.ABR, r.ABRFirstByte)
	}
	// From a peer, after waiting for the other viewer, which asks 300 ms
	// later, to fetch it: the CDN's estimate, not the wait.
	const lag = 300 * time.Millisecond
	waited := 0
	for seq := uint64(1); seq <= 8; seq++ {
		ra := make(chan Result, 1)
		go func() { ra <- load(a, seq, 5*time.Second) }()
		time.Sleep(lag)
		load(b, seq, 5*time.Second)
		r := <-ra
		if r.Source != SourceP2P {
			continue
		}
		waited++
		if r.Duration < lag || r.ABRFirstByte < delay || r.ABR < r.ABRFirstByte || r.ABR > r.Duration/2 {
			t.Fatalf("P2P load took %v (transfer %v): ABR %v first byte %v", r.Duration, r.Transfer, r.ABR, r.ABRFirstByte)
		}
		t.Logf("segment %d: P2P load took %v (transfer %v): the player is told %v (first byte %v)", seq, r.Duration, r.Transfer, r.ABR, r.ABRFirstByte)
	}
	if waited == 0 {
		t.Fatal("a never waited for b's copy")
	}
}

// TestCDNRateIsWholeSegments: the rate the players' ABR is told for the
// CDN (Result.ABR of a load from a peer) is what whole segments took, as
// the player's own loads would. The tails of segments completed from the
// CDN, each mostly the response's fixed costs, once counted too, and made
// the CDN look several times slower than its whole segments.
func TestCDNRateIsWholeSegments(t *testing.T) {
	const pause = 40 * time.Millisecond // before a range's body: a response's fixed costs
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A whole segment's body takes about 20 ms (2 ms a 32 KB write).
		out := &pacedWriter{ResponseWriter: w, every: 2 * time.Millisecond}
		if r.Header.Get("Range") != "" {
			out.first = pause
		}
		http.ServeContent(out, r, "seg", time.Time{}, bytes.NewReader(segment(1)))
	}))
	t.Cleanup(srv.Close)
	a, err := New(DefaultConfig("ws://127.0.0.1:1/ws")) // never run: only its CDN fetches
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	src := signaling.Source{URL: srv.URL + "/seg/1"}
	_, _, whole, err := a.fetchCDN(ctx, src, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	const tail = 16 << 10
	for range 5 {
		if _, _, _, err := a.fetchCDN(ctx, src, segSize-tail, -1); err != nil {
			t.Fatal(err)
		}
	}
	told, _ := a.abrTiming(segSize, nil)
	t.Logf("the whole segment took %v; after 5 tails, a segment from a peer is reported as %v", whole.total, told)
	if told > whole.total*3/2 {
		t.Fatalf("a segment from a peer is reported as taking %v, the CDN's whole segment took %v", told, whole.total)
	}
}

// pacedWriter flushes the headers, then waits first before the body's
// first write and every before each.
type pacedWriter struct {
	http.ResponseWriter
	first, every time.Duration
	started      bool
}

func (p *pacedWriter) Write(b []byte) (int, error) {
	if !p.started {
		p.started = true
		p.ResponseWriter.(http.Flusher).Flush()
		time.Sleep(p.first)
	}
	time.Sleep(p.every)
	n, err := p.ResponseWriter.Write(b)
	p.ResponseWriter.(http.Flusher).Flush()
	return n, err
}

// TestPeerOutcomesCounted: an agent counts its peer connections that open
// and those negotiated that never do (what NAT and firewalls cost), and
// reports both to the tracker, where operators see them.
func TestPeerOutcomesCounted(t *testing.T) {
	wsURL := startTrackerWith(t, func(c *tracker.Config) { c.IdleTimeout = 1500 * time.Millisecond }) // pings every 500 ms
	a, b := startAgent(t, wsURL, nil), startAgent(t, wsURL, nil)
	waitPeers(t, 1, a, b)
	for i, ag := range []*Agent{a, b} {
		if s := ag.Stats(); s.PeersConnected != 1 || s.PeersFailed != 0 {
			t.Errorf("agent %d: %d connected, %d failed; want 1 and 0", i, s.PeersConnected, s.PeersFailed)
		}
	}

	// Two viewers that cannot reach each other: neither gathers a candidate
	// (relay-only, relays not allowed). They negotiate, and give up.
	unreachable := func(c *Config) { c.relayOnly = true; c.connectTimeout = time.Second }
	swarm := signaling.Swarm{Content: "/unreachable.m3u8"}
	c, d := startAgent(t, wsURL, unreachable), startAgent(t, wsURL, unreachable)
	c.Join(swarm)
	d.Join(swarm)
	deadline := time.Now().Add(10 * time.Second)
	for {
		sc, sd := c.Stats(), d.Stats()
		st := trackerStats(t, wsURL)
		if sc.PeersFailed >= 1 && sd.PeersFailed >= 1 && sc.PeersConnected+sd.PeersConnected == 0 && st.Usage.PeersFailed >= 2 {
			t.Logf("failed: %d and %d; the tracker heard of %d failed and %d connected", sc.PeersFailed, sd.PeersFailed, st.Usage.PeersFailed, st.Usage.PeersConnected)
			if st.Usage.PeersConnected != 2 {
				t.Errorf("the tracker heard of %d connections, want a's and b's", st.Usage.PeersConnected)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("unreachable peers: %+v and %+v; the tracker heard %+v", sc, sd, st.Usage)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFlushReportsAtOnce: Flush hands the tracker what the player got since
// the last report without waiting for the heartbeat (20 s here), as a page
// closing must: before, a closed tab's last interval was lost.
func TestFlushReportsAtOnce(t *testing.T) {
	wsURL := startTrackerWith(t, func(c *tracker.Config) { c.IdleTimeout = time.Minute })
	a := startAgent(t, wsURL, nil)
	a.Join(testSwarm)
	for deadline := time.Now().Add(5 * time.Second); trackerStats(t, wsURL).Members == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the agent did not connect")
		}
	}
	a.stats.p2p.Add(700)
	a.ReportPlayerCDN(300)
	a.Flush()
	deadline := time.Now().Add(3 * time.Second)
	for {
		u := trackerStats(t, wsURL).Usage
		if u.P2PBytes == 700 && u.CDNBytes == 300 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tracker counted %d P2P and %d CDN bytes 3 s after Flush, want 700 and 300", u.P2PBytes, u.CDNBytes)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Acknowledged: nothing is sent twice.
	a.Flush()
	time.Sleep(200 * time.Millisecond)
	if u := trackerStats(t, wsURL).Usage; u.P2PBytes != 700 {
		t.Fatalf("a second Flush counted again: %d P2P bytes", u.P2PBytes)
	}
}

// TestByteRangeSegmentsTravelBetweenPeers: segments that are byte ranges of
// one file (DASH SegmentBase) are fetched from the CDN with a Range
// request, vouched for by the notary as exactly those bytes, and shared:
// two viewers asking for the same range meet, in the file's swarm. A CDN
// that ignores Range still yields the range's bytes.
func TestByteRangeSegmentsTravelBetweenPeers(t *testing.T) {
	file := append(segment(1), segment(2)...)
	for _, honorRange := range []bool{true, false} {
		t.Run(fmt.Sprintf("range=%v", honorRange), func(t *testing.T) {
			var sent atomic.Int64
			cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !honorRange {
					r.Header.Del("Range")
				}
				http.ServeContent(&countWriter{w, &sent}, r, "v.mp4", time.Time{}, bytes.NewReader(file))
			}))
			t.Cleanup(cdn.Close)
			tr := startTracker(t)
			dbg := func(c *Config) {
				c.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			a, b := startAgent(t, tr, dbg), startAgent(t, tr, nil)
			rng := signaling.ByteRange{First: segSize, Last: 2*segSize - 1}
			r := SegmentByRange("", cdn.URL+"/vod/manifest.mpd", cdn.URL+"/vod/v.mp4", &rng)
			if r.Swarm.Rendition != "/vod/v.mp4" || r.Seq != signaling.SegmentID(r.URL, &rng) {
				t.Fatalf("named %+v: want the file's swarm and the range's id", r)
			}
			a.Join(r.Swarm)
			b.Join(r.Swarm)
			for deadline := time.Now().Add(10 * time.Second); a.Stats().Peers < 1 || b.Stats().Peers < 1; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the two viewers of the file never connected")
				}
			}
			r.Deadline = time.Now().Add(5 * time.Second)
			got, err := a.Load(context.Background(), r)
			if err != nil || got.Source != SourceCDN || !bytes.Equal(got.Data, segment(2)) {
				t.Fatalf("first viewer: %v %v", got.Source, err)
			}
			waitHolds(t, b, r)
			got, err = b.Load(context.Background(), r)
			if err != nil || got.Source != SourceP2P || !bytes.Equal(got.Data, segment(2)) {
				t.Fatalf("second viewer: %v %v, want the range from its peer", got.Source, err)
			}
			if honorRange && sent.Load() != 2*segSize {
				t.Fatalf("the CDN sent %d bytes, want the range twice (viewer and notary): %d", sent.Load(), 2*segSize)
			}
		})
	}
}

// TestPatienceShrinksWhenPeersDoNotDeliver: a viewer's only peer never
// fetches the segments it is elected for, so the viewer's waits for it end
// at the CDN after MaxWait. After a few, the viewer waits less (down to a
// fifth of MaxWait): a viewer whose peers cannot deliver spent MaxWait of
// its buffer on every segment, and stalled where the CDN alone would not
// have (cable x 200 on a starved CPU).
func TestPatienceShrinksWhenPeersDoNotDeliver(t *testing.T) {
	o, tr := startOrigin(t), startTracker(t)
	const maxWait = time.Second
	// The viewer uploads nothing, so the idle peer is elected for every
	// segment and the viewer never takes over (takeoverStep): it waits.
	viewer := startAgent(t, tr, func(c *Config) { c.MaxWait = maxWait; c.ConsumeOnly = true })
	idle := startAgent(t, tr, nil) // joins, never loads
	waitPeers(t, 1, viewer, idle)
	ctx := context.Background()
	var waits []time.Duration
	for n := uint64(100); len(waits) < 10 && n < 250; n++ {
		r, err := viewer.Load(ctx, req(o, n, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if r.Source != SourceCDN {
			t.Fatalf("segment %d from %s", n, r.Source)
		}
		if r.Duration > maxWait/10 { // not elected: it waited for the idle peer
			waits = append(waits, r.Duration)
		}
	}
	t.Logf("waits: %v", waits)
	if len(waits) < 10 {
		t.Fatalf("only %d loads waited", len(waits))
	}
	if first, last := waits[0], waits[len(waits)-1]; first < maxWait*9/10 || last > maxWait*6/10 {
		t.Fatalf("first wait %v, last %v: want MaxWait (%v) first and much less after waits that did not pay", first, last, maxWait)
	}
}
