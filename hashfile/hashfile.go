// Package hashfile is the segment hash manifest an origin publishes next to
// its segments: peercdn-hashes.json in each rendition's folder, mapping
// segment file names to their SHA-256. Agents trust it as they trust the
// CDN, so a peer's copy of a listed segment is checked against it with no
// tracker quorum (and no second CDN copy) needed.
package hashfile

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Name is the manifest's file name in a segment folder.
const Name = "peercdn-hashes.json"

// MaxSize bounds a manifest an agent reads (about 10,000 segments).
const MaxSize = 1 << 20

// Manifest is the file's content.
type Manifest struct {
	Version int               `json:"version"` // 1
	SHA256  map[string]string `json:"sha256"`  // file name -> 64 lowercase hex digits
}

// Encode returns the manifest's JSON, names sorted.
func (m *Manifest) Encode() ([]byte, error) {
	m.Version = 1
	return json.MarshalIndent(m, "", " ")
}

// Decode parses and checks a manifest.
func Decode(b []byte) (map[string][32]byte, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("hashfile: %d bytes, more than %d", len(b), MaxSize)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("hashfile: %v", err)
	}
	if m.Version != 1 {
		return nil, fmt.Errorf("hashfile: version %d, want 1", m.Version)
	}
	out := make(map[string][32]byte, len(m.SHA256))
	for name, h := range m.SHA256 {
		raw, err := hex.DecodeString(h)
		if err != nil || len(raw) != 32 || strings.ToLower(h) != h {
			return nil, fmt.Errorf("hashfile: bad sha256 for %.64q", name)
		}
		if name == "" || strings.ContainsAny(name, "/?#") {
			return nil, fmt.Errorf("hashfile: bad file name %.64q", name)
		}
		out[name] = [32]byte(raw)
	}
	return out, nil
}

// Sum returns the hex SHA-256 of b.
func Sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// ForFolder builds the manifest of every segment file (.m4s, .ts, .mp4
// except init segments, .aac) directly in dir.
func ForFolder(fsys fs.FS, dir string) (*Manifest, error) {
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	m := &Manifest{SHA256: map[string]string{}}
	var names []string
	for _, e := range ents {
		if e.IsDir() || !isSegment(e.Name()) {
			continue
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := fs.ReadFile(fsys, path.Join(dir, n))
		if err != nil {
			return nil, err
		}
		m.SHA256[n] = Sum(b)
	}
	if len(m.SHA256) == 0 {
		return nil, errors.New("hashfile: no segments in " + dir)
	}
	return m, nil
}

func isSegment(name string) bool {
	switch path.Ext(name) {
	case ".m4s", ".ts", ".aac", ".m4a", ".m4v", ".cmfv", ".cmfa":
		return true
	case ".mp4":
		return !strings.HasPrefix(name, "init")
	}
	return false
}
