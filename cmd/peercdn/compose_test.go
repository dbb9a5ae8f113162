package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
)

// TestComposeFile loads docker-compose.yml with compose-go, the loader
// `docker compose config` itself uses (no Docker engine runs here), and
// checks the topology it describes: two tracker nodes on one Redis behind
// the load balancer, nginx as the CDN, with flags this binary accepts and
// files that exist.
func TestComposeFile(t *testing.T) {
	root := filepath.Join("..", "..")
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root), cli.WithName("peercdn"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	for _, name := range []string{"redis", "tracker", "demo", "lb", "cdn"} {
		if _, err := p.GetService(name); err != nil {
			t.Fatalf("service %s: %v", name, err)
		}
	}
	tr, _ := p.GetService("tracker")
	if n := tr.GetScale(); n < 2 {
		t.Errorf("tracker replicas %d, want 2", n)
	}
	if tr.Command[0] != "serve" {
		t.Fatalf("tracker command %v", tr.Command)
	}
	var demo demoFlags
	var vendor string
	cfg, fs, err := loadConfig("serve", tr.Command[1:], serveFlags(&demo, &vendor, new(string), new(time.Duration)))
	if err != nil {
		t.Fatalf("the tracker's flags do not parse: %v", err)
	}
	for k, v := range tr.Environment {
		name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, "PEERCDN_"), "_", "-"))
		if !strings.HasPrefix(k, "PEERCDN_") || fs.Lookup(name) == nil {
			t.Errorf("tracker environment %s names no flag", k)
			continue
		}
		if v != nil {
			if err := fs.Set(name, *v); err != nil {
				t.Errorf("tracker environment %s=%q: %v", k, *v, err)
			}
		}
	}
	if cfg.Redis != "redis://redis:6379" || demo.on || !tr.ReadOnly {
		t.Errorf("tracker: redis %q demo %v read-only %v; want production defaults", cfg.Redis, demo.on, tr.ReadOnly)
	}
	dm, _ := p.GetService("demo")
	var demo2 demoFlags
	dcfg, _, err := loadConfig("serve", dm.Command[1:], serveFlags(&demo2, &vendor, new(string), new(time.Duration)))
	if err != nil || !demo2.on || dcfg.Redis != cfg.Redis {
		t.Errorf("demo service: %v, demo %v, redis %q: want the demo on the tracker's cluster", err, demo2.on, dcfg.Redis)
	}
	if _, ok := tr.DependsOn["redis"]; !ok {
		t.Error("tracker does not wait for redis")
	}
	lb, _ := p.GetService("lb")
	if len(lb.Ports) == 0 || lb.Ports[0].Published != "8080" {
		t.Errorf("lb ports %+v", lb.Ports)
	}
	for _, svc := range []string{"lb", "cdn"} {
		s, _ := p.GetService(svc)
		for _, v := range s.Volumes {
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s: %v", svc, v.Source, err)
			}
		}
	}
	conf, err := os.ReadFile(filepath.Join(root, "deploy", "nginx-lb.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"proxy_set_header Upgrade $http_upgrade", "server tracker:8080", "X-Forwarded-For"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("nginx-lb.conf lacks %q", want)
		}
	}
	if !slices.Contains(cfg.TrustedProxies, "172.16.0.0/12") {
		t.Errorf("tracker does not trust the compose network's proxies: %v", cfg.TrustedProxies)
	}
}
