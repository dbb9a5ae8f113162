package chartcheck

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// objects is one rendering of the chart, decoded.
type objects struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	pdbs        []*policyv1.PodDisruptionBudget
	secrets     []*corev1.Secret
}

// render is `helm template` with values, every document decoded strictly:
// a field the API type does not have fails, as `kubectl apply` would.
func render(t *testing.T, values map[string]any) objects {
	t.Helper()
	ch, err := loader.Load("../peercdn")
	if err != nil {
		t.Fatal(err)
	}
	vals, err := util.ToRenderValues(ch, values, common.ReleaseOptions{Name: "cdn", Namespace: "video", IsInstall: true}, common.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	out, err := engine.Render(ch, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	o := objects{deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{}}
	for name, text := range out {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(text, -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var meta struct{ APIVersion, Kind string }
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			}
			strict := func(v any) {
				if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
					t.Fatalf("%s: %s %s does not decode strictly: %v\n%s", name, meta.APIVersion, meta.Kind, err, doc)
				}
			}
			switch meta.APIVersion + " " + meta.Kind {
			case "apps/v1 Deployment":
				d := &appsv1.Deployment{}
				strict(d)
				o.deployments[d.Name] = d
			case "v1 Service":
				s := &corev1.Service{}
				strict(s)
				o.services[s.Name] = s
			case "policy/v1 PodDisruptionBudget":
				p := &policyv1.PodDisruptionBudget{}
				strict(p)
				o.pdbs = append(o.pdbs, p)
			case "v1 Secret":
				s := &corev1.Secret{}
				strict(s)
				o.secrets = append(o.secrets, s)
			default:
				t.Fatalf("%s: unexpected %s %s", name, meta.APIVersion, meta.Kind)
			}
		}
	}
	return o
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func env(c corev1.Container, name string) (corev1.EnvVar, bool) {
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
	if i < 0 {
		return corev1.EnvVar{}, false
	}
	return c.Env[i], true
}

// selects reports whether a selector picks pods with these labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestDefaults(t *testing.T) {
	o := render(t, nil)
	d := o.deployments["cdn-peercdn"]
	if d == nil {
		t.Fatalf("no tracker Deployment: %v", keys(o.deployments))
	}
	pod := d.Spec.Template
	c := pod.Spec.Containers[0]
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("probes: %+v %+v", c.LivenessProbe, c.ReadinessProbe)
	}
	drain, _ := env(c, "PEERCDN_DRAIN_TIMEOUT")
	if g := pod.Spec.TerminationGracePeriodSeconds; g == nil || drain.Value != "15s" || *g < 15+5 {
		t.Errorf("grace %v with drain %q: the kubelet would kill a draining node", g, drain.Value)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("root filesystem writable")
	}
	if psc := pod.Spec.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("may run as root")
	}
	if r, _ := env(c, "PEERCDN_REDIS"); r.Value != "redis://cdn-peercdn-redis:6379" || o.deployments["cdn-peercdn-redis"] == nil || o.services["cdn-peercdn-redis"] == nil {
		t.Errorf("redis %q with replicas %d: want the release's own Redis", r.Value, *d.Spec.Replicas)
	}
	for _, name := range []string{"cdn-peercdn", "cdn-peercdn-stun"} {
		s := o.services[name]
		if s == nil || !selects(s.Spec.Selector, pod.Labels) {
			t.Errorf("service %s does not select the tracker pods", name)
		}
	}
	if s := o.services["cdn-peercdn-stun"]; s.Spec.Ports[0].Protocol != corev1.ProtocolUDP || s.Spec.Ports[0].Port != 3478 {
		t.Errorf("stun service %+v", s.Spec.Ports)
	}
	if len(o.pdbs) != 1 || !selects(o.pdbs[0].Spec.Selector.MatchLabels, pod.Labels) || o.pdbs[0].Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("pod disruption budget: %+v", o.pdbs)
	}
	for _, s := range []string{"PEERCDN_TOKEN_SECRET", "PEERCDN_ADMIN_TOKEN"} {
		if e, ok := env(c, s); !ok || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("%s not from the Secret", s)
		}
	}
	checkFlags(t, c)
}

func TestExternalRedisSecretsAndTURN(t *testing.T) {
	o := render(t, map[string]any{
		"redis":               map[string]any{"url": "rediss://redis.example.net:6380"},
		"secrets":             map[string]any{"tokenSecret": "s3cret", "adminToken": "t0ken"},
		"turn":                map[string]any{"enabled": true},
		"config":              map[string]any{"allowed-origins": "*.example.com", "max-conns": 50000},
		"drainTimeoutSeconds": 40,
	})
	if o.deployments["cdn-peercdn-redis"] != nil {
		t.Error("a Redis deployed beside an external one")
	}
	d := o.deployments["cdn-peercdn"]
	c := d.Spec.Template.Spec.Containers[0]
	if r, _ := env(c, "PEERCDN_REDIS"); r.Value != "rediss://redis.example.net:6380" {
		t.Errorf("redis %q", r.Value)
	}
	if e, _ := env(c, "PEERCDN_MAX_CONNS"); e.Value != "50000" {
		t.Errorf("config max-conns: %q", e.Value)
	}
	if g := *d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != 50 {
		t.Errorf("grace %d for a 40 s drain", g)
	}
	if !d.Spec.Template.Spec.HostNetwork {
		t.Error("TURN relays without the host's network")
	}
	if len(o.secrets) != 1 || o.secrets[0].StringData["token-secret"] != "s3cret" || o.secrets[0].StringData["admin-token"] != "t0ken" {
		t.Errorf("secret: %+v", o.secrets)
	}
	checkFlags(t, c)
}

// checkFlags runs the binary (PEERCDN_BIN, set by make) to see that every
// PEERCDN_ variable the chart sets names one of its flags: a misspelt one
// would stop every pod.
func checkFlags(t *testing.T, c corev1.Container) {
	t.Helper()
	bin := os.Getenv("PEERCDN_BIN")
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("PEERCDN_BIN not set (make helm-check sets it)")
		}
		t.Log("PEERCDN_BIN not set: variable names not checked against the binary")
		return
	}
	out, _ := exec.Command(bin, "serve", "--help").CombinedOutput()
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) < 20 {
		t.Fatalf("serve --help lists %d flags:\n%s", len(flags), out)
	}
	for _, e := range c.Env {
		name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(e.Name, "PEERCDN_"), "_", "-"))
		if !flags[name] {
			t.Errorf("the chart sets %s, which names no flag of peercdn serve", e.Name)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}
