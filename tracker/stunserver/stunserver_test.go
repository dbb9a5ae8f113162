package stunserver

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

func serve(t *testing.T, limits Limits) (*Server, map[Result]*atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[Result]*atomic.Int64{}
	for _, r := range []Result{Answered, RateLimited, Malformed, Unsupported} {
		counts[r] = new(atomic.Int64)
	}
	s := New(pc, limits, func(r Result) { counts[r].Add(1) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, counts
}

// A real STUN client (pion's, as the agent's ICE uses) learns the address
// it sends from.
func TestBindingWithPionClient(t *testing.T) {
	s, counts := serve(t, Limits{})
	c, err := stun.Dial("udp4", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got stun.XORMappedAddress
	var doErr error
	err = c.Do(stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint), func(e stun.Event) {
		if doErr = e.Error; doErr == nil {
			doErr = got.GetFrom(e.Message)
		}
	})
	if err != nil || doErr != nil {
		t.Fatal(err, doErr)
	}
	if got.IP.String() != "127.0.0.1" || got.Port == 0 {
		t.Fatalf("mapped %v", got)
	}
	if counts[Answered].Load() != 1 {
		t.Fatalf("answered %d", counts[Answered].Load())
	}
}

// What is not a plain binding request gets no answer at all.
func TestNoAnswerToAnythingElse(t *testing.T) {
	from := netip.MustParseAddrPort("192.0.2.1:4000")
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw
	cases := map[string][]byte{
		"empty":                   nil,
		"garbage":                 bytes.Repeat([]byte{0xab}, 100),
		"header only, bad cookie": append([]byte{0, 1, 0, 0, 1, 2, 3, 4}, make([]byte, 12)...),
		"truncated":               req[:15],
		"length past end":         append(append([]byte(nil), req[:2]...), append([]byte{0, 8}, req[4:]...)...),
		"trailing bytes":          append(append([]byte(nil), req...), 1, 2, 3, 4),
		"a response":              stun.MustBuild(stun.TransactionID, stun.BindingSuccess).Raw,
		"an allocate":             stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest)).Raw,
		"with credentials": stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewUsername("a:b"),
			stun.NewShortTermIntegrity("pw")).Raw,
		"unknown required attribute": stun.MustBuild(stun.TransactionID, stun.BindingRequest,
			stun.RawAttribute{Type: 0x7777, Value: []byte{1, 2, 3, 4}}).Raw,
		"bad fingerprint": func() []byte {
			b := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint).Raw
			b[len(b)-1] ^= 1
			return b
		}(),
		"oversized": stun.MustBuild(stun.TransactionID, stun.BindingRequest,
			stun.RawAttribute{Type: 0x8888, Value: make([]byte, 600)}).Raw,
	}
	for name, b := range cases {
		if resp, res := Answer(nil, b, from); res == Answered || len(resp) != 0 {
			t.Errorf("%s: answered %d bytes (%s)", name, len(resp), res)
		}
	}
	// Optional attributes it does not know are ignored.
	b := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.RawAttribute{Type: 0xc057, Value: []byte{0, 1, 0, 0}}).Raw
	if _, res := Answer(nil, b, from); res != Answered {
		t.Fatalf("binding request with an optional attribute: %s", res)
	}
}

// One address, forged or not, gets at most its burst and then its rate of
// answers; another address is not affected.
func TestRateLimitPerAddress(t *testing.T) {
	s := New(nil, Limits{PerIPRate: 10, PerIPBurst: 5}, nil)
	now := time.Now()
	a, b := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("198.51.100.8")
	n := 0
	for range 100 {
		if s.allow(a, now) {
			n++
		}
	}
	if n != 5 {
		t.Fatalf("burst: %d answers to one address, want 5", n)
	}
	if !s.allow(b, now) {
		t.Fatal("another address was refused")
	}
	if !s.allow(a, now.Add(150*time.Millisecond)) {
		t.Fatal("the rate did not refill")
	}
	// State stays bounded whatever the number of sources.
	s = New(nil, Limits{Addresses: 64}, nil)
	for i := range 10000 {
		s.allow(netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}), now)
	}
	if len(s.per)+len(s.old) > 64 {
		t.Fatalf("%d addresses held, want at most 64", len(s.per)+len(s.old))
	}
}

// Over the wire: a flood from one address gets its burst answered, the rest
// dropped and counted.
func TestFloodIsDropped(t *testing.T) {
	s, counts := serve(t, Limits{PerIPRate: 1, PerIPBurst: 3})
	c, err := net.Dial("udp4", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 50 {
		c.Write(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw)
	}
	deadline := time.Now().Add(5 * time.Second)
	for counts[Answered].Load()+counts[RateLimited].Load() < 50 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if a, r := counts[Answered].Load(), counts[RateLimited].Load(); a > 4 || a+r != 50 {
		t.Fatalf("answered %d, rate-limited %d of 50", a, r)
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	got := 0
	buf := make([]byte, 100)
	for {
		if _, err := c.Read(buf); err != nil {
			break
		}
		got++
	}
	if got > 4 {
		t.Fatalf("%d answers arrived for a flood of 50", got)
	}
}

func FuzzAnswer(f *testing.F) {
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw, true)
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint).Raw, false)
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewSoftware("x"), stun.Fingerprint).Raw, true)
	f.Add([]byte{0, 1, 0, 4, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x80, 0x28, 0, 0}, false)
	f.Fuzz(func(t *testing.T, req []byte, v6 bool) {
		from := netip.MustParseAddrPort("203.0.113.9:5000")
		mapped := 12
		if v6 {
			from, mapped = netip.MustParseAddrPort("[2001:db8::1]:5000"), 24
		}
		resp, res := Answer(nil, req, from)
		if res != Answered {
			if len(resp) != 0 {
				t.Fatalf("%s with %d bytes", res, len(resp))
			}
			return
		}
		if len(resp) > len(req)+mapped {
			t.Fatalf("answered %d bytes to %d", len(resp), len(req))
		}
		m := &stun.Message{Raw: resp}
		if err := m.Decode(); err != nil || m.Type != stun.BindingSuccess || !bytes.Equal(m.TransactionID[:], req[8:20]) {
			t.Fatalf("answer does not decode as this request's success: %v", err)
		}
		var got stun.XORMappedAddress
		if err := got.GetFrom(m); err != nil || got.Port != 5000 || !got.IP.Equal(net.IP(from.Addr().AsSlice())) {
			t.Fatalf("mapped %v %v", got, err)
		}
	})
}
