package netsim

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"
)

// Preset is a population of links: each viewer draws one.
type Preset struct {
	Name string  `json:"name"`
	Mix  []Class `json:"mix"`
}

// Class is a share of a preset's viewers and the ranges their links are
// drawn from (uniformly between each pair).
type Class struct {
	Share    float64    `json:"share"`
	RTTMs    [2]float64 `json:"rttMs"`
	JitterMs float64    `json:"jitterMs"`
	Loss     [2]float64 `json:"loss"`
	UpKbps   [2]int     `json:"upKbps"`
	DownKbps [2]int     `json:"downKbps"`
	NAT      NAT        `json:"nat"`
	CDNKbps  int        `json:"cdnKbps,omitempty"`
	Note     string     `json:"note,omitempty"`
}

// The demo stream's top rendition is about 1 Mbit/s: uplinks below that
// cannot serve one peer in real time.
var presets = map[string]Preset{
	"fiber": {Name: "fiber", Mix: []Class{
		{Share: 1, RTTMs: [2]float64{10, 30}, JitterMs: 2, Loss: [2]float64{0, 0.001}, UpKbps: [2]int{20000, 100000}, DownKbps: [2]int{50000, 300000}, NAT: Cone}}},
	"cable": {Name: "cable", Mix: []Class{
		{Share: 1, RTTMs: [2]float64{20, 60}, JitterMs: 5, Loss: [2]float64{0, 0.005}, UpKbps: [2]int{2500, 10000}, DownKbps: [2]int{20000, 100000}, NAT: Cone}}},
	"dsl": {Name: "dsl", Mix: []Class{
		{Share: 1, RTTMs: [2]float64{30, 80}, JitterMs: 5, Loss: [2]float64{0, 0.01}, UpKbps: [2]int{800, 2000}, DownKbps: [2]int{8000, 25000}, NAT: Cone}}},
	"cellular": {Name: "cellular", Mix: []Class{
		{Share: 1, RTTMs: [2]float64{80, 200}, JitterMs: 20, Loss: [2]float64{0.02, 0.02}, UpKbps: [2]int{300, 900}, DownKbps: [2]int{3000, 15000}, NAT: Symmetric,
			Note: "carrier NAT, uplink below the bitrate"}}},
	// mixed: 30% behind symmetric NATs, 20% with an uplink below the
	// bitrate, RTT up to 150 ms, loss up to 2%.
	"mixed": {Name: "mixed", Mix: []Class{
		{Share: 0.3, RTTMs: [2]float64{10, 40}, JitterMs: 2, Loss: [2]float64{0, 0.002}, UpKbps: [2]int{10000, 100000}, DownKbps: [2]int{50000, 300000}, NAT: Cone, Note: "fiber"},
		{Share: 0.2, RTTMs: [2]float64{20, 80}, JitterMs: 5, Loss: [2]float64{0, 0.005}, UpKbps: [2]int{2500, 10000}, DownKbps: [2]int{20000, 100000}, NAT: Cone, Note: "cable"},
		{Share: 0.2, RTTMs: [2]float64{30, 100}, JitterMs: 10, Loss: [2]float64{0, 0.01}, UpKbps: [2]int{2000, 20000}, DownKbps: [2]int{10000, 50000}, NAT: Symmetric, Note: "symmetric NAT"},
		{Share: 0.1, RTTMs: [2]float64{80, 150}, JitterMs: 20, Loss: [2]float64{0.01, 0.02}, UpKbps: [2]int{300, 900}, DownKbps: [2]int{3000, 15000}, NAT: Symmetric, Note: "cellular"},
		{Share: 0.2, RTTMs: [2]float64{30, 80}, JitterMs: 5, Loss: [2]float64{0, 0.01}, UpKbps: [2]int{400, 900}, DownKbps: [2]int{8000, 25000}, NAT: Cone, Note: "dsl, uplink below the bitrate"},
	}},
}

// Presets lists the named presets.
func Presets() []string {
	var names []string
	for n := range presets {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Load returns a named preset, or reads one from a JSON file (a Preset).
func Load(nameOrFile string) (Preset, error) {
	if p, ok := presets[nameOrFile]; ok {
		return p, nil
	}
	if !strings.ContainsAny(nameOrFile, "./") {
		return Preset{}, fmt.Errorf("%w %q (presets: %s, or a JSON file)", errNoPreset, nameOrFile, strings.Join(Presets(), ", "))
	}
	b, err := os.ReadFile(nameOrFile)
	if err != nil {
		return Preset{}, err
	}
	var p Preset
	if err := json.Unmarshal(b, &p); err != nil {
		return Preset{}, fmt.Errorf("%s: %w", nameOrFile, err)
	}
	if p.Name == "" {
		p.Name = nameOrFile
	}
	return p, p.validate()
}

func (p Preset) validate() error {
	total := 0.0
	for i, c := range p.Mix {
		if c.Share <= 0 || c.RTTMs[0] < 0 || c.RTTMs[1] < c.RTTMs[0] || c.Loss[0] < 0 || c.Loss[1] > 0.5 || c.Loss[1] < c.Loss[0] ||
			c.UpKbps[1] < c.UpKbps[0] || c.DownKbps[1] < c.DownKbps[0] || (c.NAT != Cone && c.NAT != Symmetric) {
			return fmt.Errorf("netsim: preset %s, class %d: want share > 0, ranges low..high, loss up to 0.5, nat cone or symmetric", p.Name, i)
		}
		total += c.Share
	}
	if len(p.Mix) == 0 || total <= 0 {
		return fmt.Errorf("netsim: preset %s has no classes", p.Name)
	}
	return nil
}

// Links draws n viewers' links, in the preset's shares exactly (rounded),
// shuffled by seed: the same seed gives the same links, so a baseline run
// can have the swarm's.
func (p Preset) Links(n int, seed uint64) []Link {
	rng := rand.New(rand.NewPCG(seed, 0x6e6574))
	total := 0.0
	for _, c := range p.Mix {
		total += c.Share
	}
	var classes []int
	for i, c := range p.Mix {
		k := int(float64(n)*c.Share/total + 0.5)
		for range k {
			classes = append(classes, i)
		}
	}
	for len(classes) < n {
		classes = append(classes, 0)
	}
	classes = classes[:n]
	rng.Shuffle(len(classes), func(i, j int) { classes[i], classes[j] = classes[j], classes[i] })
	links := make([]Link, n)
	for i, ci := range classes {
		c := p.Mix[ci]
		between := func(r [2]float64) float64 { return r[0] + rng.Float64()*(r[1]-r[0]) }
		betweenInt := func(r [2]int) int { return r[0] + int(rng.Float64()*float64(r[1]-r[0])) }
		links[i] = Link{
			RTT:      time.Duration(between(c.RTTMs) * float64(time.Millisecond)),
			Jitter:   time.Duration(c.JitterMs * float64(time.Millisecond)),
			Loss:     between(c.Loss),
			UpKbps:   betweenInt(c.UpKbps),
			DownKbps: betweenInt(c.DownKbps),
			NAT:      c.NAT,
			CDNKbps:  c.CDNKbps,
		}
	}
	return links
}
