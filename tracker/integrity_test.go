package tracker

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker/cluster"
)

const (
	hashA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	hashB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func reportHash(t *testing.T, c *client, seg, sum string) {
	t.Helper()
	send(t, c, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: seg, SHA256: sum})
}

// expectHash waits for the tracker to vouch for seg's hash.
func expectHash(t *testing.T, c *client, seg, sum string) {
	t.Helper()
	for {
		m := recv(t, c)
		if m.Type == signaling.TypeHash {
			if m.Segment != seg || m.SHA256 != sum || *m.Swarm != live {
				t.Fatalf("tracker vouched for %+v, want segment %s = %s", m, seg, sum)
			}
			return
		}
	}
}

func noHash(t *testing.T, c *client, d time.Duration) {
	t.Helper()
	for _, m := range drain(c, d) {
		if m.Type == signaling.TypeHash {
			t.Fatalf("tracker vouched for %s = %s too early", m.Segment, m.SHA256)
		}
	}
}

// TestHashQuorum: one report makes nothing trusted; the second matching
// one (quorum 2) does, and the whole swarm hears it; a lone liar can
// neither make its hash trusted nor block an honest majority; a newcomer
// gets recent trusted hashes on join.
func TestHashQuorum(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Integrity, c.HashDistinctNetworks = IntegrityQuorum, false })
	a, b, c, liar := n.dial(t, ""), n.dial(t, ""), n.dial(t, ""), n.dial(t, "")
	for _, x := range []*client{a, b, c, liar} {
		join(t, x, live, "")
	}
	reportHash(t, a, "7", hashA)
	reportHash(t, a, "7", hashA) // one vote per viewer
	noHash(t, c, 200*time.Millisecond)
	reportHash(t, b, "7", hashA)
	for _, x := range []*client{a, b, c, liar} {
		expectHash(t, x, "7", hashA)
	}

	// The liar reports first; one honest report ties it: nothing trusted.
	reportHash(t, liar, "8", hashB)
	reportHash(t, a, "8", hashA)
	noHash(t, c, 200*time.Millisecond)
	reportHash(t, b, "8", hashA) // 2 against 1
	expectHash(t, c, "8", hashA)

	// Reporting against a trusted hash is silent (the quorum may be the
	// liar: no strike).
	drain(liar, 100*time.Millisecond)
	reportHash(t, liar, "7", hashB)
	expectNothing(t, liar, 100*time.Millisecond)

	d := n.dial(t, "")
	join(t, d, live, "")
	got := map[string]string{}
	for _, m := range drain(d, 200*time.Millisecond) {
		if m.Type == signaling.TypeHash {
			got[m.Segment] = m.SHA256
		}
	}
	if got["7"] != hashA || got["8"] != hashA {
		t.Fatalf("newcomer got hashes %v", got)
	}
}

// TestHashQuorumNeedsDistinctNetworks: two viewers from one /24 count once.
func TestHashQuorumNeedsDistinctNetworks(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Integrity = IntegrityQuorum }) // distinct networks required; all clients are 127.0.0.1
	a, b, c := n.dial(t, ""), n.dial(t, ""), n.dial(t, "")
	for _, x := range []*client{a, b, c} {
		join(t, x, live, "")
	}
	reportHash(t, a, "1", hashA)
	reportHash(t, b, "1", hashA)
	noHash(t, c, 300*time.Millisecond)
}

// TestReportedPeerIsBanned: two distinct peers reporting a peer's bytes
// remove it from the swarm; it cannot rejoin and is no longer suggested.
func TestReportedPeerIsBanned(t *testing.T) {
	n := startNode(t, nil)
	bad, a, b := n.dial(t, ""), n.dial(t, ""), n.dial(t, "")
	for _, x := range []*client{bad, a, b} {
		join(t, x, live, "")
	}
	rep := func(c *client) {
		send(t, c, &signaling.Message{Type: signaling.TypeReport, Swarm: &live, To: bad.PeerID(), Segment: "3"})
	}
	rep(a)
	rep(a) // the same reporter twice counts once
	expectNothing(t, bad, 200*time.Millisecond)
	rep(b)
	expect(t, bad, signaling.TypeError, signaling.CodeBanned)
	send(t, bad, &signaling.Message{Type: signaling.TypeJoin, Swarm: &live})
	expect(t, bad, signaling.TypeError, signaling.CodeBanned)
	if ps := askPeers(t, a, live); len(ps) != 1 || ps[0] != b.PeerID() {
		t.Fatalf("after the ban a is offered %v", ps)
	}
	// Reports about strangers are refused.
	send(t, a, &signaling.Message{Type: signaling.TypeReport, Swarm: &live, To: "nobody", Segment: "3"})
	expect(t, a, signaling.TypeError, signaling.CodeUnknownPeer)
}

func TestNetworkKey(t *testing.T) {
	cfg := DefaultConfig()
	h := newHub(&cfg, newMetrics(newRegistry()), cluster.NewNodeID(), false)
	key := func(ip string) string { return h.network(&peer{id: ip, conn: &conn{ip: ip}}) }
	if key("203.0.113.7") != key("203.0.113.200") || key("203.0.113.7") == key("203.0.114.7") {
		t.Error("IPv4 reporters must be grouped by /24")
	}
	if key("2001:db8:1:2::1") != key("2001:db8:1:ffff::9") || key("2001:db8:1::1") == key("2001:db8:2::1") {
		t.Error("IPv6 reporters must be grouped by /48")
	}
}

// TestNotarySettlesContestedSegment: a liar and an honest viewer disagree;
// the tracker fetches the segment once from the allow-listed origin,
// trusts the true hash, bans the liar, and never fetches a URL outside the
// allow-list.
func TestNotarySettlesContestedSegment(t *testing.T) {
	body := []byte("the segment's true bytes")
	var hits, strayHits atomic.Int32
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodHead { // a HEAD (a digest asked for) is no copy
			hits.Add(1)
		}
		w.Write(body)
	}))
	defer origin.Close()
	stray := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		strayHits.Add(1)
	}))
	defer stray.Close()
	n := startNode(t, func(c *Config) {
		c.Integrity = IntegrityQuorum
		c.HashDistinctNetworks = false
		c.NotaryCDNs = []string{origin.URL + "/live/"}
	})
	honest, liar, watcher := n.dial(t, ""), n.dial(t, ""), n.dial(t, "")
	for _, x := range []*client{honest, liar, watcher} {
		join(t, x, live, "")
	}
	sum := sha256.Sum256(body)
	truth := hex.EncodeToString(sum[:])

	// Outside the allow-list (another host, a path escape): never fetched.
	send(t, liar, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: segOf(stray.URL + "/live/9.m4s"), SHA256: hashB, URL: stray.URL + "/live/9.m4s"})
	send(t, honest, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: segOf(origin.URL + "/live/../admin"), SHA256: hashA, URL: origin.URL + "/live/../admin"})
	noHash(t, watcher, 300*time.Millisecond)
	if strayHits.Load()+hits.Load() != 0 {
		t.Fatalf("notary fetched outside the allow-list: %d + %d", strayHits.Load(), hits.Load())
	}

	send(t, liar, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: segOf(origin.URL + "/live/10.m4s"), SHA256: hashB, URL: origin.URL + "/live/10.m4s"})
	send(t, honest, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: segOf(origin.URL + "/live/10.m4s"), SHA256: truth, URL: origin.URL + "/live/10.m4s"})
	expectHash(t, watcher, segOf(origin.URL+"/live/10.m4s"), truth)
	for {
		m := recv(t, liar)
		if m.Type == signaling.TypeError {
			if m.Code != signaling.CodeBanned {
				t.Fatalf("liar got %s", m.Code)
			}
			break
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("notary fetched %d times, want once", hits.Load())
	}
}

// segmentOrigin serves body at every path and counts the copies it sends
// (GETs: the notary's HEAD asking for a digest sends none).
func segmentOrigin(t *testing.T, body []byte) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodHead {
			hits.Add(1)
		}
		w.Write(body)
	}))
	t.Cleanup(o.Close)
	return o, &hits
}

// segOf is the segment number that names url (signaling.SegmentID): the
// tracker refuses hash reports whose URL names another segment.
func segOf(url string) string {
	return strconv.FormatUint(signaling.SegmentID(url, nil), 10)
}

func sumOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// waitBanned reads c's messages until it is told it was removed.
func waitBanned(t *testing.T, c *client) {
	t.Helper()
	for {
		m := recv(t, c)
		if m.Type == signaling.TypeError {
			if m.Code != signaling.CodeBanned {
				t.Fatalf("got %s, want banned", m.Code)
			}
			return
		}
	}
}

// TestNotaryOutvotesColluders: under the default integrity, any number of
// viewers agreeing on a false hash change nothing: the tracker vouches for
// what it fetched itself, bound to that CDN origin, fetches each segment
// once, and removes every reporter of another hash, before and after its
// fetch.
func TestNotaryOutvotesColluders(t *testing.T) {
	body := []byte("the segment's true bytes")
	cdn, hits := segmentOrigin(t, body)
	n := startNode(t, func(c *Config) { c.NotaryPrivate = true })
	liars := []*client{n.dial(t, ""), n.dial(t, ""), n.dial(t, "")}
	watcher, late := n.dial(t, ""), n.dial(t, "")
	for _, x := range append(liars, watcher, late) {
		join(t, x, live, "")
	}
	url := cdn.URL + "/live/720p/4.m4s"
	for _, l := range liars[:2] {
		send(t, l, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: segOf(url), SHA256: hashB, URL: url})
	}
	m := recv(t, watcher)
	for m.Type != signaling.TypeHash {
		m = recv(t, watcher)
	}
	want, _ := signaling.CDNOrigin(cdn.URL)
	if m.SHA256 != sumOf(body) || m.CDN != want || m.Segment != segOf(url) {
		t.Fatalf("vouched for %s at %q, want the CDN's %s at %q", m.SHA256, m.CDN, sumOf(body), want)
	}
	waitBanned(t, liars[0])
	waitBanned(t, liars[1])
	// After the fetch: a third liar is removed at once, an honest report
	// costs nothing, and nothing is fetched again.
	send(t, liars[2], &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: segOf(url), SHA256: hashB, URL: url})
	waitBanned(t, liars[2])
	drain(late, 100*time.Millisecond) // the pushed hash
	send(t, late, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: segOf(url), SHA256: sumOf(body), URL: url})
	expectNothing(t, late, 200*time.Millisecond)
	if hits.Load() != 1 {
		t.Fatalf("notary fetched %d times, want once", hits.Load())
	}
	if ps := askPeers(t, watcher, live); len(ps) != 1 || ps[0] != late.PeerID() {
		t.Fatalf("after the bans the watcher is offered %v", ps)
	}
}

// TestNotaryBindsHashToItsCDN: a viewer naming a server of its own gets a
// hash vouched for that server only; the real CDN's segment gets its own.
func TestNotaryBindsHashToItsCDN(t *testing.T) {
	truth, fake := []byte("true bytes"), []byte("the attacker's bytes")
	cdn, _ := segmentOrigin(t, truth)
	evil, _ := segmentOrigin(t, fake)
	n := startNode(t, func(c *Config) { c.NotaryPrivate = true })
	attacker, honest, watcher := n.dial(t, ""), n.dial(t, ""), n.dial(t, "")
	for _, x := range []*client{attacker, honest, watcher} {
		join(t, x, live, "")
	}
	send(t, attacker, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: segOf(evil.URL + "/live/2.ts"), SHA256: sumOf(fake), URL: evil.URL + "/live/2.ts"})
	send(t, honest, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: segOf(cdn.URL + "/live/2.ts"), SHA256: sumOf(truth), URL: cdn.URL + "/live/2.ts"})
	got := map[string]string{}
	for len(got) < 2 {
		if m := recv(t, watcher); m.Type == signaling.TypeHash {
			got[m.CDN] = m.SHA256
		}
	}
	evilOrigin, _ := signaling.CDNOrigin(evil.URL)
	cdnOrigin, _ := signaling.CDNOrigin(cdn.URL)
	if got[evilOrigin] != sumOf(fake) || got[cdnOrigin] != sumOf(truth) {
		t.Fatalf("vouched %v", got)
	}
}

// TestNotaryRefusesPrivateAddresses: by default the notary connects only to
// public addresses (viewers choose its URLs), so a report naming loopback
// is fetched by nobody and vouches for nothing.
func TestNotaryRefusesPrivateAddresses(t *testing.T) {
	cdn, hits := segmentOrigin(t, []byte("x"))
	n := startNode(t, nil)
	a, watcher := n.dial(t, ""), n.dial(t, "")
	join(t, a, live, "")
	join(t, watcher, live, "")
	send(t, a, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: segOf(cdn.URL + "/1.ts"), SHA256: sumOf([]byte("x")), URL: cdn.URL + "/1.ts"})
	send(t, a, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: segOf("http://user:pw@example.com/2.ts"), SHA256: hashA, URL: "http://user:pw@example.com/2.ts"})
	noHash(t, watcher, 500*time.Millisecond)
	if hits.Load() != 0 {
		t.Fatalf("the notary connected to loopback %d times", hits.Load())
	}
	for _, ip := range []string{"127.0.0.1", "10.1.2.3", "192.168.1.1", "172.16.0.1", "169.254.169.254", "100.64.0.1", "::1", "fe80::1", "fc00::1", "0.0.0.0", "::ffff:127.0.0.1"} {
		if PublicAddr(netip.MustParseAddr(ip)) {
			t.Errorf("%s counted as public", ip)
		}
	}
	for _, ip := range []string{"203.0.113.7", "8.8.8.8", "2001:4860::1"} {
		if !PublicAddr(netip.MustParseAddr(ip)) {
			t.Errorf("%s counted as private", ip)
		}
	}
}

// TestHashQuery: a member asking for a segment's hash gets what the notary
// vouched, however many segments came after it (a join brings the last
// 32 only); a segment with nothing vouched gets no answer, and a viewer
// outside the swarm gets not_in_swarm.
func TestHashQuery(t *testing.T) {
	body := []byte("segment zero")
	cdn, _ := segmentOrigin(t, body)
	n := startNode(t, func(c *Config) { c.NotaryPrivate = true })
	// Three reporters: each viewer starts at most 20 notary fetches at once.
	reporters := []*client{n.dial(t, ""), n.dial(t, ""), n.dial(t, "")}
	watcher := n.dial(t, "")
	for _, r := range append(reporters, watcher) {
		join(t, r, live, "")
	}
	for i := 0; i <= recentHashes+8; i++ { // 40 after segment 0: it falls out of what a join brings
		seg, r := strconv.Itoa(i), reporters[i%len(reporters)]
		send(t, r, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: segOf(cdn.URL + "/live/" + seg + ".m4s"), SHA256: sumOf(body), URL: cdn.URL + "/live/" + seg + ".m4s"})
		expectHash(t, watcher, segOf(cdn.URL+"/live/"+seg+".m4s"), sumOf(body))
	}
	late := n.dial(t, "")
	join(t, late, live, "")
	for _, m := range drain(late, 300*time.Millisecond) {
		if m.Type == signaling.TypeHash && m.Segment == segOf(cdn.URL+"/live/0.m4s") {
			t.Fatal("a join brought segment 0's hash: the query is not what is tested")
		}
	}
	send(t, late, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: segOf(cdn.URL + "/live/0.m4s")})
	m := recv(t, late)
	want, _ := signaling.CDNOrigin(cdn.URL)
	if m.Type != signaling.TypeHash || m.Segment != segOf(cdn.URL+"/live/0.m4s") || m.SHA256 != sumOf(body) || m.CDN != want {
		t.Fatalf("query answered %+v, want segment 0 = %s at %s", m, sumOf(body), want)
	}
	send(t, late, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: "999"})
	expectNothing(t, late, 200*time.Millisecond)

	outsider := n.dial(t, "")
	send(t, outsider, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: "0", Ref: "q"})
	if m := recv(t, outsider); m.Type != signaling.TypeError || m.Code != signaling.CodeNotInSwarm {
		t.Fatalf("outsider's query answered %+v", m)
	}
}

// TestNotaryStartsOnAnnouncement: a viewer announcing the CDN fetch it has
// begun (a hash with a url and no sha256) starts the notary's fetch at
// once, and the swarm hears the hash with no report yet; the announcer's
// later report is still judged (a false one is banned).
func TestNotaryStartsOnAnnouncement(t *testing.T) {
	body := []byte("segment nine")
	cdn, hits := segmentOrigin(t, body)
	n := startNode(t, func(c *Config) { c.NotaryPrivate = true })
	fetcher, watcher := n.dial(t, ""), n.dial(t, "")
	join(t, fetcher, live, "")
	join(t, watcher, live, "")
	url := cdn.URL + "/live/9.m4s"
	send(t, fetcher, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: segOf(url), URL: url})
	expectHash(t, watcher, segOf(url), sumOf(body))
	send(t, fetcher, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: segOf(url), URL: url}) // again: nothing more
	drain(watcher, 100*time.Millisecond)
	if hits.Load() != 1 {
		t.Fatalf("notary fetched %d times, want once", hits.Load())
	}
	send(t, fetcher, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: segOf(url), SHA256: hashB, URL: url})
	waitBanned(t, fetcher)
}

// TestNotaryRefusesAnotherSegmentsURL: a report must name its segment by
// its URL (signaling.SegmentID). A viewer giving segment 2's number with
// segment 3's URL would otherwise have the notary vouch for segment 3's
// bytes as segment 2, and peers pass one off as the other; it gets
// bad_message, and nothing is fetched or vouched.
func TestNotaryRefusesAnotherSegmentsURL(t *testing.T) {
	cdn, hits := segmentOrigin(t, []byte("segment three"))
	n := startNode(t, func(c *Config) { c.NotaryPrivate = true })
	attacker, watcher := n.dial(t, ""), n.dial(t, "")
	join(t, attacker, live, "")
	join(t, watcher, live, "")
	three := cdn.URL + "/live/3.m4s"
	for _, m := range []*signaling.Message{
		{Type: signaling.TypeHash, Swarm: &live, Ref: "a", Segment: segOf(cdn.URL + "/live/2.m4s"), URL: three},
		{Type: signaling.TypeHash, Swarm: &live, Ref: "r", Segment: segOf(cdn.URL + "/live/2.m4s"), SHA256: hashA, URL: three},
		{Type: signaling.TypeHash, Swarm: &live, Ref: "g", Segment: segOf(three), Range: "0-3", URL: three}, // a range names other bytes
	} {
		send(t, attacker, m)
		if got := recv(t, attacker); got.Type != signaling.TypeError || got.Code != signaling.CodeBadMessage || got.Ref != m.Ref {
			t.Fatalf("report %s answered %+v, want bad_message", m.Ref, got)
		}
	}
	noHash(t, watcher, 300*time.Millisecond)
	if hits.Load() != 0 {
		t.Fatalf("the notary fetched %d times", hits.Load())
	}
}

// TestNotaryHashesByteRanges: a segment that is a byte range of a file
// (DASH SegmentBase) is notarized as exactly those bytes: from a CDN's 206,
// and from one that ignores Range and sends the whole file.
func TestNotaryHashesByteRanges(t *testing.T) {
	file := make([]byte, 10000)
	for i := range file {
		file[i] = byte(i * 7)
	}
	for _, honorRange := range []bool{true, false} {
		t.Run(fmt.Sprintf("range=%v", honorRange), func(t *testing.T) {
			cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !honorRange {
					r.Header.Del("Range")
				}
				http.ServeContent(w, r, "v.mp4", time.Time{}, bytes.NewReader(file))
			}))
			t.Cleanup(cdn.Close)
			n := startNode(t, func(c *Config) { c.NotaryPrivate = true })
			fetcher, watcher := n.dial(t, ""), n.dial(t, "")
			join(t, fetcher, live, "")
			join(t, watcher, live, "")
			url := cdn.URL + "/dash/v.mp4"
			rng := signaling.ByteRange{First: 1200, Last: 4999}
			seg := strconv.FormatUint(signaling.SegmentID(url, &rng), 10)
			send(t, fetcher, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: seg, URL: url, Range: rng.String()})
			expectHash(t, watcher, seg, sumOf(file[1200:5000]))
		})
	}
}
