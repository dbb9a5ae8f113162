package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/peercdn/peercdn/loadgen"
)

const benchUsage = `usage: peercdn bench tracker [flags]

Load-tests a tracker (peercdn's /ws or /announce, or any WebTorrent tracker)
and prints responses per second, latency percentiles and lost messages.
`

func bench(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "tracker" {
		fmt.Fprint(os.Stderr, benchUsage)
		return errors.New("bench what? (tracker)")
	}
	return benchTracker(args[1:], stdout)
}

func benchTracker(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench tracker", flag.ContinueOnError)
	var cfg loadgen.Config
	fs.StringVar(&cfg.URL, "url", "", "tracker WebSocket URL (default ws://127.0.0.1:8080/announce, or /ws for --protocol native)")
	fs.StringVar(&cfg.Protocol, "protocol", loadgen.WebTorrent, "native or webtorrent")
	fs.StringVar(&cfg.Mode, "mode", loadgen.Compat, "compat (aquatic_ws's closed-loop mix) or realistic (open loop, join storm, viewers)")
	fs.IntVar(&cfg.Conns, "conns", 0, "connections to hold (default 1000 compat, 10000 realistic)")
	seconds := fs.Float64("seconds", 30, "length of the measured window, after the join storm")
	fs.DurationVar(&cfg.Storm, "storm", 5*time.Second, "connections open evenly over this")
	fs.IntVar(&cfg.Hashes, "hashes", 0, "swarms (info hashes), gamma-skewed (default 10000 compat, 1000 realistic)")
	fs.IntVar(&cfg.Offers, "offers", 0, "offers per announce (default 10 compat, 5 realistic)")
	fs.IntVar(&cfg.SDPBytes, "sdp-bytes", 0, "bytes per SDP (default 120 compat, 900 realistic)")
	fs.DurationVar(&cfg.Interval, "interval", 120*time.Second, "realistic: announce period")
	fs.IntVar(&cfg.PerSource, "per-source", 16, "connections per loopback source address")
	fs.StringVar(&cfg.Origin, "origin", "", "Origin header to send")
	procs := fs.Int("procs", 1, "generator processes (one process holds at most ~19k sockets)")
	pid := fs.Int("server-pid", 0, "the server's pid, to report its RSS and CPU time from /proc")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	sourceNet := fs.Int("source-net", 10, "second octet of the source addresses 127.N.x.y")
	child := fs.Bool("child", false, "internal: run as one of --procs processes")
	summary := fs.String("summary", "", "print the summary of a result saved with --json, and exit")
	cpuProfile := fs.String("cpuprofile", "", "write the generator's CPU profile here (it shares the cores with the server)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Duration = time.Duration(*seconds * float64(time.Second))
	if *summary != "" {
		b, err := os.ReadFile(*summary)
		if err != nil {
			return err
		}
		var r loadgen.Result
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", *summary, err)
		}
		printResult(stdout, &r)
		return nil
	}
	stopProfile, err := cpuProfileTo(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	cfg.SourceNet = byte(*sourceNet)
	if cfg.URL == "" {
		cfg.URL = "ws://127.0.0.1:8080/announce"
		if cfg.Protocol == loadgen.Native {
			cfg.URL = "ws://127.0.0.1:8080/ws"
		}
	}
	cfg.Defaults()
	gcLimit := int64(0)
	if !*child {
		gcLimit = loadgen.QuietGC(*procs)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	var base, start, end loadgen.Sample
	sample := func(s *loadgen.Sample) {
		if *pid > 0 {
			if v, err := loadgen.ReadSample(*pid); err == nil {
				*s = v
			} else {
				fmt.Fprintln(os.Stderr, "bench: server usage:", err)
			}
		}
	}
	sample(&base)
	var r *loadgen.Result
	if *procs <= 1 || *child {
		r, err = loadgen.Run(ctx, cfg, func(begin bool) {
			if begin {
				sample(&start)
			} else {
				sample(&end)
			}
		})
	} else {
		r, err = runChildren(ctx, args, cfg, *procs, gcLimit, func() {
			sample(&start)
		}, func() { sample(&end) })
	}
	if err != nil {
		return err
	}
	if *pid > 0 && !*child {
		r.Server = &loadgen.Usage{PID: *pid}
		r.Server.Fill(base, start, end, r)
	}
	if *asJSON || *child {
		enc := json.NewEncoder(stdout)
		if !*child {
			enc.SetIndent("", "  ")
			r.Latency, r.Handshake = nil, nil
		}
		return enc.Encode(r)
	}
	printResult(stdout, r)
	return nil
}

// runChildren splits the connections over n child processes, each with its
// own source addresses, and adds up their results. atStart and atEnd run
// when the window starts and ends (the children keep the same schedule).
// gcLimit, unless 0, is each child's share of the memory its collector may
// let the heap grow to (loadgen.QuietGC).
func runChildren(ctx context.Context, args []string, cfg loadgen.Config, n int, gcLimit int64, atStart, atEnd func()) (*loadgen.Result, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	results := make([]*loadgen.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range n {
		conns := cfg.Conns / n
		if i < cfg.Conns%n {
			conns++
		}
		a := append([]string{"bench", "tracker"}, args...)
		a = append(a, "--child", "--procs", "1", "--conns", strconv.Itoa(conns),
			"--source-net", strconv.Itoa(int(cfg.SourceNet)+i), "--url", cfg.URL)
		cmd := exec.CommandContext(ctx, exe, a...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, os.Stderr
		if gcLimit > 0 {
			cmd.Env = append(os.Environ(), "GOGC=off", "GOMEMLIMIT="+strconv.FormatInt(gcLimit, 10))
		}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				errs[i] = fmt.Errorf("generator %d: %w", i, err)
				return
			}
			var r loadgen.Result
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				errs[i] = fmt.Errorf("generator %d: %w", i, err)
				return
			}
			results[i] = &r
		}()
	}
	loadgen.SleepUntil(ctx, t0.Add(cfg.Storm+time.Second))
	atStart()
	loadgen.SleepUntil(ctx, t0.Add(cfg.Storm+time.Second+cfg.Duration))
	atEnd()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	total := &loadgen.Result{Protocol: cfg.Protocol, Mode: cfg.Mode}
	for _, r := range results {
		total.Merge(r)
	}
	return total, nil
}

func printResult(w io.Writer, r *loadgen.Result) {
	fmt.Fprintf(w, "%s %s: %d connections (%d failed, %d lost), %.1f s window\n",
		r.Protocol, r.Mode, r.Opened, r.Failed, r.Lost, r.Seconds)
	fmt.Fprintf(w, "responses/s %.0f", r.ResponsesPerSec)
	types := make([]string, 0, len(r.Responses))
	for k := range r.Responses {
		types = append(types, k)
	}
	sort.Strings(types)
	for _, k := range types {
		fmt.Fprintf(w, "  %s %.0f", k, float64(r.Responses[k])/r.Seconds)
	}
	what := "request->response"
	if r.Mode == loadgen.Realistic {
		what = "offer->answer"
	}
	fmt.Fprintf(w, "\n%s p50 %.2f ms p99 %.2f ms; handshake p50 %.2f ms p99 %.2f ms\n",
		what, r.P50Ms, r.P99Ms, r.HandshakeP50Ms, r.HandshakeP99Ms)
	fmt.Fprintf(w, "offers sent %d expected %d received %d; answers sent %d received %d; errors %d; dropped %d\n",
		r.OffersSent, r.OffersExpected, r.OffersReceived, r.AnswersSent, r.AnswersReceived, r.Errors, r.Dropped)
	if u := r.Server; u != nil {
		fmt.Fprintf(w, "server pid %d: RSS %d KB (%d KB before), %.1f KB per connection; window CPU %.1f s (%.2f cores), %.0f responses per CPU-second; whole run CPU %.1f s, %.2f ms per connection\n",
			u.PID, u.RSSKB, u.RSSBaseKB, u.RSSPerConnKB, u.CPUSeconds, u.CPUShare, u.ResponsesPerCPUSec, u.RunCPUSeconds, u.RunCPUPerConnMs)
	}
}

// cpuProfileTo starts a CPU profile written to path (none when path is
// empty); stop ends it.
func cpuProfileTo(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
