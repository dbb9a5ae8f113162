package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/peercdn/peercdn/sim"
	"github.com/peercdn/peercdn/sim/netsim"
)

// swarmCmd runs N native viewers against a tracker and a stream.
func swarmCmd(args []string) error {
	fs := flag.NewFlagSet("swarm", flag.ContinueOnError)
	trackers := fs.String("tracker", "ws://127.0.0.1:8080/ws", "tracker URL; a comma-separated list spreads viewers over several nodes")
	stream := fs.String("stream", "", "master playlist URL (default: the live demo stream of the first tracker's host)")
	viewers := fs.Int("viewers", 10, "concurrent viewers")
	seconds := fs.Int("seconds", 60, "how long to run")
	spread := fs.Duration("join-spread", 5*time.Second, "viewers join evenly over this time")
	churn := fs.Float64("churn", 0, "fraction of viewers replaced per minute (leaving mid-transfer)")
	rendition := fs.Int("rendition", 0, "variant index in the master playlist")
	loopback := fs.Bool("loopback", true, "keep ICE on loopback (local runs)")
	origin := fs.String("origin", "", "Origin header the viewers send (join a browser page's swarms)")
	hostile := fs.Int("hostile", 0, "how many of the viewers attack the others (see --attack)")
	attack := fs.String("attack", "", "what hostile viewers do: corrupt (upload corrupted segments), lie (report false hashes, upload matching corrupt bytes), truncate (share segments their CDN cut in half), flood (1,000 requests a second to each peer, bogus relays to the tracker) or slow (trickle uploads at 2 KB/s)")
	network := fs.String("network", "", "give each viewer a real-world link drawn from a preset ("+strings.Join(netsim.Presets(), ", ")+") or a JSON file: WebRTC over a simulated network behind its own NAT, CDN requests over the same link; the summary adds a CDN-only baseline of the same viewers and links")
	baseline := fs.Bool("baseline", true, "with --network, also run the same viewers with P2P off, at the same time, for baseline")
	baselineAfter := fs.Bool("baseline-after", false, "run the baseline after the swarm, not beside it (for more viewers than the machine runs twice at once)")
	seed := fs.Uint64("seed", 1, "with --network, draws the links")
	asJSON := fs.Bool("json", false, "print only the JSON summary")
	verbose := fs.Bool("v", false, "log agent debug output")
	cpuProfile := fs.String("cpuprofile", "", "write the simulator's CPU profile here (what limits how many viewers one machine runs)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	stopProfile, err := cpuProfileTo(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	list := strings.Split(*trackers, ",")
	if *stream == "" {
		u, err := url.Parse(list[0])
		if err != nil {
			return fmt.Errorf("--tracker: %w", err)
		}
		scheme := "http"
		if u.Scheme == "wss" {
			scheme = "https"
		}
		*stream = scheme + "://" + u.Host + "/demo/live/master.m3u8"
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg := sim.SwarmConfig{
		Trackers: list, Stream: *stream, Viewers: *viewers,
		Hostile: *hostile, Attack: *attack,
		Duration: time.Duration(*seconds) * time.Second, JoinSpread: *spread,
		Churn: *churn, Rendition: *rendition, Loopback: *loopback, Origin: *origin,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
	if *network != "" {
		p, err := netsim.Load(*network)
		if err != nil {
			return err
		}
		cfg.Network, cfg.Seed, cfg.Baseline, cfg.BaselineAfter = &p, *seed, *baseline, *baselineAfter
	}
	if !*asJSON {
		fmt.Fprintf(os.Stderr, "%d viewers of %s for %ds via %s\n", *viewers, *stream, *seconds, *trackers)
	}
	sum, err := sim.RunSwarm(ctx, cfg)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	if !*asJSON {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(sum)
}
