package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPrometheus runs a real Prometheus (Debian's) against a tracker under
// a small native swarm: it scrapes the node, loads deploy/prometheus's
// alert rules and evaluates each without error, and every query of the
// Grafana dashboard (deploy/grafana) returns data.
func TestPrometheus(t *testing.T) {
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("prometheus not installed (make deps installs it)")
		}
		t.Skip("prometheus not installed (make deps installs it)")
	}
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	// 95%: the control cohort's series carry data too, and a swarm of six
	// all but surely has P2P viewers (cohorts are drawn per session).
	n := startServe(t, "--demo", "--p2p-percent", "95", "--stun-listen=")
	sw := exec.Command(binary(t), "swarm", "--tracker", n.ws(), "--viewers", "6", "--seconds", "150",
		"--join-spread", "3s", "--json")
	swarmOut := &lockedBuf{}
	sw.Stdout, sw.Stderr = swarmOut, swarmOut
	start(t, sw)

	dir := t.TempDir()
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: peercdn
    static_configs: [{targets: [%q]}]
`, filepath.Join(root, "deploy", "prometheus", "alerts.yml"), n.addr)
	os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o600)
	addr := freeAddr(t)
	pc := exec.Command(prom, "--config.file", filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path", filepath.Join(dir, "data"), "--web.listen-address", addr)
	logs := &lockedBuf{}
	pc.Stdout, pc.Stderr = logs, logs
	start(t, pc)
	api := "http://" + addr + "/api/v1/"
	get := func(path string, v any) error {
		resp, err := http.Get(api + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: %s", path, resp.Status)
		}
		return json.NewDecoder(resp.Body).Decode(v)
	}

	// The rules: all loaded, each evaluated without error.
	type rule struct{ Name, Health, LastError string }
	var rules struct {
		Data struct {
			Groups []struct{ Rules []rule }
		}
	}
	waitFor(t, 20*time.Second, "prometheus evaluating the rules", func() bool {
		if get("rules", &rules) != nil || len(rules.Data.Groups) == 0 {
			return false
		}
		for _, r := range rules.Data.Groups[0].Rules {
			if r.Health != "ok" {
				return false
			}
		}
		return true
	})
	if got := len(rules.Data.Groups[0].Rules); got < 7 {
		t.Fatalf("%d rules loaded, want the 7 of alerts.yml", got)
	}

	// The dashboard's queries, $__rate_interval at a minute (Grafana's
	// floor is four scrapes; a minute keeps a slow machine's first P2P
	// bytes in the window).
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "peercdn.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	type query struct{ panel, expr string }
	var queries []query
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			queries = append(queries, query{p.Title, strings.ReplaceAll(tg.Expr, "$__rate_interval", "1m")})
		}
	}
	if len(queries) < 15 {
		t.Fatalf("%d dashboard queries", len(queries))
	}
	type result struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	empty := map[string]string{}
	offload := "NaN"
	for deadline := time.Now().Add(100 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		clear(empty)
		for _, q := range queries {
			var r result
			if err := get("query?query="+url.QueryEscape(q.expr), &r); err != nil || r.Status != "success" {
				t.Fatalf("%s: %q: %v %s", q.panel, q.expr, err, r.Error)
			}
			if len(r.Data.Result) == 0 {
				empty[q.panel] = q.expr
				continue
			}
			if strings.HasPrefix(q.panel, "Offload") {
				offload, _ = r.Data.Result[0].Value[1].(string)
				if offload == "NaN" || offload == "0" {
					empty[q.panel] = q.expr + " (no P2P bytes yet)"
				}
			}
		}
		if len(empty) == 0 {
			break
		}
	}
	if len(empty) > 0 {
		t.Fatalf("queries without data: %v\nswarm:\n%s", empty, swarmOut)
	}
	t.Logf("%d rules evaluated, %d dashboard queries with data; offload %s", len(rules.Data.Groups[0].Rules), len(queries), offload)
}
