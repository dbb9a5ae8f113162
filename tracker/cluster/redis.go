package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis shares swarms between nodes through Redis (standalone or
// Redis Cluster). Keys, all documented in docs/operations.md:
//
//	peercdn:{s:<swarm hash>}:m  sorted set of a swarm's members; the score
//	                            is expiryMs*64 + free slots (0..63), so one
//	                            ZADD refreshes both and expired members sort
//	                            first for ZREMRANGEBYSCORE
//	peercdn:{s:<swarm hash>}:c  sorted set of the swarm's seeds (WebTorrent
//	                            peers that completed), same scores: what
//	                            announce and scrape count as complete
//	peercdn:{s:<swarm hash>}:g:<group hash>
//	                            sorted set of the swarm's members in one
//	                            network group, same scores: neighbours
//	                            across nodes (proximity matching)
//	peercdn:{n:<node id>}       sharded pub/sub channel: the node's inbox
//	peercdn:{stats}:n:<node id> a node's /stats.json snapshot (JSON), with
//	                            a TTL of 3 stats_interval
//	peercdn:{stats}:nodes       sorted set of the nodes with a snapshot, by
//	                            its expiry (ms): what ?scope=cluster reads
//
// The {…} hash tags keep each swarm's keys, and each inbox, in one slot.
// Relayed messages go over sharded pub/sub (SPUBLISH): fire and forget, no
// storage, one hop; a message for a node that is gone is worthless anyway.
type Redis struct {
	rdb  redis.UniversalClient
	node string
	ttl  time.Duration
	log  *slog.Logger

	up atomic.Bool
	// pingFailures counts unanswered health checks.
	pingFailures atomic.Uint64
	out          chan pub
	inbox        chan *Envelope
	sub          *redis.PubSub
	all          *redis.PubSub // broadcast channel, every node
	stop         chan struct{}
	wg           sync.WaitGroup
	closed       sync.Once
}

type pub struct {
	channel string
	payload []byte
}

// RedisOptions configure NewRedis.
type RedisOptions struct {
	// URL is redis://[user:pass@]host:port[/db] (rediss:// for TLS). With
	// Cluster, extra seed nodes go in ?addr=host:port&addr=...
	URL     string
	Cluster bool
	// MemberTTL is how long a member outlives its node's last refresh.
	MemberTTL time.Duration
	Log       *slog.Logger
}

// publishQueue bounds relayed messages waiting for the publisher; a node
// that cannot hand them to Redis fast enough drops (and reports) the excess.
const publishQueue = 8192

// NewRedis connects lazily: it returns at once even when Redis is
// unreachable, and the node runs degraded until Redis answers.
func NewRedis(o RedisOptions) (*Redis, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	quietRedisOnce.Do(func() { redis.SetLogger(redisLogger{o.Log.With("component", "go-redis")}) })
	var rdb redis.UniversalClient
	if o.Cluster {
		opt, err := redis.ParseClusterURL(o.URL)
		if err != nil {
			return nil, fmt.Errorf("%w: redis: %v", ErrConfig, err)
		}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = time.Second, time.Second, time.Second
		rdb = redis.NewClusterClient(opt)
	} else {
		opt, err := redis.ParseURL(o.URL)
		if err != nil {
			return nil, fmt.Errorf("%w: redis: %v", ErrConfig, err)
		}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = time.Second, time.Second, time.Second
		rdb = redis.NewClient(opt)
	}
	rc := &Redis{
		rdb: rdb, node: NewNodeID(), ttl: o.MemberTTL, log: o.Log.With("component", "redis"),
		out: make(chan pub, publishQueue), inbox: make(chan *Envelope, 4096), stop: make(chan struct{}),
	}
	rc.sub = rdb.SSubscribe(context.Background(), inboxChannel(rc.node))
	rc.all = rdb.Subscribe(context.Background(), broadcastChannel)
	rc.wg.Add(4)
	go rc.health()
	go rc.publisher()
	go rc.receiver(rc.sub)
	go rc.receiver(rc.all)
	return rc, nil
}

var quietRedisOnce sync.Once

// redisLogger sends go-redis's own messages (reconnect attempts, which
// repeat every few ms while Redis is down) to debug: the node logs the
// outage once, from its health check.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...))
}

func swarmMembersKey(k Key) string {
	h := sha256.New()
	h.Write([]byte(k.Origin))
	h.Write([]byte{0})
	h.Write([]byte(k.Swarm.Content))
	h.Write([]byte{0})
	h.Write([]byte(k.Swarm.Rendition))
	return "peercdn:{s:" + hex.EncodeToString(h.Sum(nil)[:12]) + "}:m"
}

// swarmSeedsKey holds the seeds among k's members, in the same slot.
func swarmSeedsKey(k Key) string {
	m := swarmMembersKey(k)
	return m[:len(m)-1] + "c"
}

// swarmGroupKey is k's members in one network group: in k's slot, named by
// a hash (group names and prefixes are the operator's and the viewers').
func swarmGroupKey(k Key, group string) string {
	m := swarmMembersKey(k)
	h := sha256.Sum256([]byte(group))
	return m[:len(m)-1] + "g:" + hex.EncodeToString(h[:8])
}

func inboxChannel(node string) string { return "peercdn:{n:" + node + "}" }

// broadcastChannel reaches every node (classic pub/sub: in Redis Cluster it
// is forwarded to every shard, which is what a broadcast needs).
const broadcastChannel = "peercdn:all"

// channelFor is a node's inbox, or the broadcast channel for "".
func channelFor(node string) string {
	if node == "" {
		return broadcastChannel
	}
	return inboxChannel(node)
}

func (rc *Redis) Node() string { return rc.node }
func (rc *Redis) Up() bool     { return rc.up.Load() }

// PingFailures counts health checks Redis did not answer, from the first.
func (rc *Redis) PingFailures() uint64 { return rc.pingFailures.Load() }

func memberScore(expiry time.Time, slots int) float64 {
	return float64(expiry.UnixMilli()*64 + int64(min(max(slots, 0), MaxSlots)))
}

func liveFrom(now time.Time) float64 { return float64(now.UnixMilli() * 64) }

func (rc *Redis) Join(ctx context.Context, k Key, m Member, n int) ([]Member, error) {
	now := time.Now()
	key := swarmMembersKey(k)
	score := memberScore(now.Add(rc.ttl), m.Slots)
	var near, rnd *redis.ZSliceCmd
	_, err := rc.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, key, redis.Z{Score: score, Member: m.ID})
		p.PExpire(ctx, key, 2*rc.ttl)
		if m.Seed {
			seeds := swarmSeedsKey(k)
			p.ZAdd(ctx, seeds, redis.Z{Score: memberScore(now.Add(rc.ttl), 0), Member: m.ID})
			p.PExpire(ctx, seeds, 2*rc.ttl)
		}
		if m.Group != "" {
			g := swarmGroupKey(k, m.Group)
			p.ZAdd(ctx, g, redis.Z{Score: score, Member: m.ID})
			p.PExpire(ctx, g, 2*rc.ttl)
			near = p.ZRandMemberWithScores(ctx, g, n+1)
		}
		rnd = p.ZRandMemberWithScores(ctx, key, 2*n+1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return pickLive(near, rnd, now, m.ID, m.Group, n), nil
}

func (rc *Redis) Sample(ctx context.Context, k Key, group string, n int) ([]Member, error) {
	now := time.Now()
	var near, rnd *redis.ZSliceCmd
	_, err := rc.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if group != "" {
			near = p.ZRandMemberWithScores(ctx, swarmGroupKey(k, group), n+1)
		}
		rnd = p.ZRandMemberWithScores(ctx, swarmMembersKey(k), 2*n)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return pickLive(near, rnd, now, "", group, n), nil
}

// pickLive keeps up to n members that have not expired, from the group's
// sample (half of n at most) and then the swarm's; ZRANDMEMBER samples
// without filtering, so the caller asks for more than it needs.
func pickLive(near, rnd *redis.ZSliceCmd, now time.Time, skip, group string, n int) []Member {
	live := liveFrom(now)
	out := make([]Member, 0, n)
	add := func(zs []redis.Z, g string, upTo int) {
		for _, z := range zs {
			if len(out) >= upTo {
				return
			}
			id, _ := z.Member.(string)
			if id == "" || id == skip || z.Score < live || slices.ContainsFunc(out, func(m Member) bool { return m.ID == id }) {
				continue
			}
			out = append(out, Member{ID: id, Slots: int(int64(z.Score) % 64), Group: g})
		}
	}
	if near != nil {
		add(near.Val(), group, n/2)
	}
	add(rnd.Val(), "", n)
	return out
}

func (rc *Redis) Counts(ctx context.Context, keys []Key) ([]SwarmCount, error) {
	live := strconv.FormatFloat(liveFrom(time.Now()), 'f', 0, 64)
	members := make([]*redis.IntCmd, len(keys))
	seeds := make([]*redis.IntCmd, len(keys))
	_, err := rc.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			members[i] = p.ZCount(ctx, swarmMembersKey(k), live, "+inf")
			seeds[i] = p.ZCount(ctx, swarmSeedsKey(k), live, "+inf")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]SwarmCount, len(keys))
	for i := range keys {
		out[i] = SwarmCount{Members: int(members[i].Val()), Seeds: int(seeds[i].Val())}
	}
	return out, nil
}

func (rc *Redis) Leave(ctx context.Context, k Key, m Member) error {
	_, err := rc.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, swarmMembersKey(k), m.ID)
		p.ZRem(ctx, swarmSeedsKey(k), m.ID)
		if m.Group != "" {
			p.ZRem(ctx, swarmGroupKey(k, m.Group), m.ID)
		}
		return nil
	})
	return err
}

// refreshChunk bounds the members of one ZADD.
const refreshChunk = 512

func (rc *Redis) Refresh(ctx context.Context, members map[Key][]Member) error {
	now := time.Now()
	exp := now.Add(rc.ttl)
	_, err := rc.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		expired := "(" + strconv.FormatFloat(liveFrom(now), 'f', 0, 64)
		for k, ms := range members {
			key, seedsKey := swarmMembersKey(k), swarmSeedsKey(k)
			var seeds []redis.Z
			groups := map[string][]redis.Z{}
			for i := 0; i < len(ms); i += refreshChunk {
				chunk := ms[i:min(i+refreshChunk, len(ms))]
				zs := make([]redis.Z, len(chunk))
				for j, m := range chunk {
					zs[j] = redis.Z{Score: memberScore(exp, m.Slots), Member: m.ID}
					if m.Seed {
						seeds = append(seeds, redis.Z{Score: memberScore(exp, 0), Member: m.ID})
					}
					if m.Group != "" {
						groups[m.Group] = append(groups[m.Group], zs[j])
					}
				}
				p.ZAdd(ctx, key, zs...)
			}
			for i := 0; i < len(seeds); i += refreshChunk {
				p.ZAdd(ctx, seedsKey, seeds[i:min(i+refreshChunk, len(seeds))]...)
			}
			for g, zs := range groups {
				gk := swarmGroupKey(k, g)
				for i := 0; i < len(zs); i += refreshChunk {
					p.ZAdd(ctx, gk, zs[i:min(i+refreshChunk, len(zs))]...)
				}
				p.ZRemRangeByScore(ctx, gk, "-inf", expired)
				p.PExpire(ctx, gk, 2*rc.ttl)
			}
			// Members of nodes that stopped refreshing: gone for good.
			p.ZRemRangeByScore(ctx, key, "-inf", expired)
			p.PExpire(ctx, key, 2*rc.ttl)
			if len(seeds) > 0 {
				p.ZRemRangeByScore(ctx, seedsKey, "-inf", expired)
				p.PExpire(ctx, seedsKey, 2*rc.ttl)
			}
		}
		return nil
	})
	return err
}

// ErrPublishQueueFull is returned when relayed messages arrive faster than
// Redis takes them.
var ErrPublishQueueFull = errors.New("cluster: publish queue full")

func (rc *Redis) Publish(ctx context.Context, node string, e *Envelope) error {
	if !rc.up.Load() {
		return ErrDown
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	select {
	case rc.out <- pub{channelFor(node), b}:
		return nil
	default:
		return ErrPublishQueueFull
	}
}

// publisher sends queued messages in pipelines: under load one round trip
// carries many, at rest each goes out at once.
func (rc *Redis) publisher() {
	defer rc.wg.Done()
	batch := make([]pub, 0, 256)
	for {
		select {
		case <-rc.stop:
			return
		case p := <-rc.out:
			batch = append(batch[:0], p)
		}
	fill:
		for len(batch) < cap(batch) {
			select {
			case p := <-rc.out:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := rc.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
			for _, p := range batch {
				if p.channel == broadcastChannel {
					pl.Publish(ctx, p.channel, p.payload)
				} else {
					pl.SPublish(ctx, p.channel, p.payload)
				}
			}
			return nil
		})
		cancel()
		if err != nil {
			rc.log.Debug("publish failed", "messages", len(batch), "err", err)
		}
	}
}

// Broadcast queues e for every node; the node itself skips its own.
func (rc *Redis) Broadcast(ctx context.Context, e *Envelope) error {
	return rc.Publish(ctx, "", e)
}

func (rc *Redis) receiver(sub *redis.PubSub) {
	defer rc.wg.Done()
	ch := sub.Channel(redis.WithChannelSize(4096), redis.WithChannelHealthCheckInterval(time.Second),
		redis.WithChannelSendTimeout(time.Second))
	for msg := range ch {
		e := new(Envelope)
		if err := json.Unmarshal([]byte(msg.Payload), e); err != nil {
			rc.log.Warn("undecodable envelope", "err", err)
			continue
		}
		if e.Node == rc.node {
			continue // our own broadcast
		}
		select {
		case rc.inbox <- e:
		case <-rc.stop:
			return
		}
	}
}

// The stats keys share one slot ({stats}), so one MGET reads them all.
const statsIndexKey = "peercdn:{stats}:nodes"

func statsKey(node string) string { return "peercdn:{stats}:n:" + node }

func (rc *Redis) PutStats(ctx context.Context, b []byte, ttl time.Duration) error {
	now := time.Now()
	_, err := rc.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, statsKey(rc.node), b, ttl)
		p.ZAdd(ctx, statsIndexKey, redis.Z{Score: float64(now.Add(ttl).UnixMilli()), Member: rc.node})
		p.ZRemRangeByScore(ctx, statsIndexKey, "-inf", strconv.FormatInt(now.UnixMilli(), 10))
		p.Expire(ctx, statsIndexKey, ttl) // gone with the last node
		return nil
	})
	return err
}

func (rc *Redis) NodeStats(ctx context.Context) ([][]byte, error) {
	nodes, err := rc.rdb.ZRangeByScore(ctx, statsIndexKey, &redis.ZRangeBy{
		Min: strconv.FormatInt(time.Now().UnixMilli(), 10), Max: "+inf", Count: MaxStatsNodes}).Result()
	if err != nil || len(nodes) == 0 {
		return nil, err
	}
	keys := make([]string, len(nodes))
	for i, n := range nodes {
		keys[i] = statsKey(n)
	}
	vals, err := rc.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, v := range vals {
		if s, ok := v.(string); ok {
			out = append(out, []byte(s))
		}
	}
	return out, nil
}

// rolloutKey holds the operator's rollout (JSON), without expiry.
const rolloutKey = "peercdn:rollout"

// MaxRolloutBytes bounds what a node reads back as the rollout.
const MaxRolloutBytes = 512 << 10

func (rc *Redis) SetRollout(ctx context.Context, b []byte, ifAbsent bool) (bool, error) {
	if ifAbsent {
		return rc.rdb.SetNX(ctx, rolloutKey, b, 0).Result()
	}
	return true, rc.rdb.Set(ctx, rolloutKey, b, 0).Err()
}

func (rc *Redis) Rollout(ctx context.Context) ([]byte, bool, error) {
	b, err := rc.rdb.Get(ctx, rolloutKey).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	case len(b) > MaxRolloutBytes:
		return nil, false, fmt.Errorf("%s holds %d bytes, more than %d", rolloutKey, len(b), MaxRolloutBytes)
	}
	return b, true, nil
}

func (rc *Redis) Inbox() <-chan *Envelope { return rc.inbox }

// health pings Redis every second; Up reflects the last answer.
func (rc *Redis) health() {
	defer rc.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for first := true; ; first = false {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := rc.rdb.Ping(ctx).Err()
		cancel()
		was := rc.up.Swap(err == nil)
		if err != nil {
			rc.pingFailures.Add(1)
		}
		switch {
		case err != nil && (was || first):
			// From the first attempt: a node started against a wrong
			// address says so at once.
			rc.log.Warn("redis unreachable: serving this node's viewers only", "err", err)
		case err == nil && !was:
			rc.log.Info("redis reachable: cross-node matching on")
		}
		select {
		case <-rc.stop:
			return
		case <-t.C:
		}
	}
}

// Close stops the loops and the client. Members stay until they expire.
func (rc *Redis) Close() error {
	rc.closed.Do(func() {
		close(rc.stop)
		rc.sub.Close()
		rc.all.Close()
		rc.wg.Wait()
		close(rc.inbox)
		rc.rdb.Close()
	})
	return nil
}
