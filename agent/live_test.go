package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// eventLog collects an agent's events.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) find(kind EventKind) (Event, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.Kind == kind {
			return e, true
		}
	}
	return Event{}, false
}

// TestConfigureLive: a running agent told to stop uploading (a tab
// hidden, a metered connection) serves its peers no more, and told to
// resume, does again; bad values are refused whole. The upload event
// names the peer and the bytes.
func TestConfigureLive(t *testing.T) {
	o, tr := startOrigin(t), startTracker(t)
	var ev eventLog
	holder := startAgent(t, tr, func(c *Config) { c.OnEvent = ev.add })
	next := startAgent(t, tr, nil)
	waitPeers(t, 1, holder, next)
	if _, ok := ev.find(EventTrackerUp); !ok {
		t.Error("no tracker-connected event")
	}
	share := func(seq uint64, wait bool) {
		r := req(o, seq, 5*time.Second)
		resp, err := http.Get(r.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		holder.Adopt(context.Background(), r, body)
		if wait {
			waitHolds(t, next, r)
		} else {
			time.Sleep(time.Second) // what a holder would have announced by now
		}
	}
	yes, no, bad := true, false, 0
	if err := holder.Configure(Live{ConsumeOnly: &yes, MaxPeers: &bad}); !errors.Is(err, ErrConfig) || holder.consumeOnly() {
		t.Fatalf("MaxPeers 0 with ConsumeOnly: %v, consume-only %v; want refused whole", err, holder.consumeOnly())
	}
	if err := holder.Configure(Live{ConsumeOnly: &yes}); err != nil {
		t.Fatal(err)
	}
	share(3, false)
	got, err := next.Load(context.Background(), req(o, 3, 2*time.Second))
	if err != nil || got.Source == SourceP2P {
		t.Fatalf("from a consume-only holder: %v %v", got.Source, err)
	}
	if err := holder.Configure(Live{ConsumeOnly: &no}); err != nil {
		t.Fatal(err)
	}
	share(4, true)
	got, err = next.Load(context.Background(), req(o, 4, 5*time.Second))
	if err != nil || got.Source != SourceP2P || !bytes.Equal(got.Data, segment(4)) {
		t.Fatalf("after uploads resumed: %v %v", got.Source, err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		if e, ok := ev.find(EventUpload); ok {
			if e.Seq != sid(o.URL, 4) || e.Bytes != segSize || e.Peer == "" {
				t.Fatalf("upload event %+v", e)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no upload event")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUploadCapLive: a cap set while running slows uploads, and lifted,
// lets them run.
func TestUploadCapLive(t *testing.T) {
	a := startAgent(t, "", nil)
	capped := 64 << 10
	if err := a.Configure(Live{UploadBytesPerSecond: &capped}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	for range 4 {
		a.waitUpload(ctx, 32<<10) // the first two take the burst
	}
	if took := time.Since(start); took < 800*time.Millisecond {
		t.Fatalf("128 KB at 64 KB/s (burst 64 KB) took %v", took)
	}
	off := 0
	a.Configure(Live{UploadBytesPerSecond: &off})
	start = time.Now()
	for range 100 {
		a.waitUpload(ctx, 1<<20)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Fatalf("uncapped uploads waited %v", took)
	}
}
