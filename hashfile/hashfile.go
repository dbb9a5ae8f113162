// Package hashfile is the segment hash manifest an origin publishes next to
// its segments: peercdn-hashes.json in each rendition's folder, mapping
// segment file names to their SHA-256. A segment that is a byte range of a
// larger file (DASH SegmentBase and SegmentList, HLS byte ranges) is named
// "file#first-last", its bytes first to last inclusive (RangeName). Agents trust it as they trust the
// CDN, so a peer's copy of a listed segment is checked against it with no
// tracker quorum (and no second CDN copy) needed.
package hashfile

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
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
		if !validName(name) {
			return nil, fmt.Errorf("hashfile: bad file name %.64q", name)
		}
		out[name] = [32]byte(raw)
	}
	return out, nil
}

// RangeName is the manifest's name for bytes first to last of file.
func RangeName(file string, first, last int64) string {
	return file + "#" + strconv.FormatInt(first, 10) + "-" + strconv.FormatInt(last, 10)
}

// validName accepts a file name (no "/", "?" or "#"), or one with a byte
// range "#first-last", 0 <= first <= last.
func validName(name string) bool {
	file, rng, ranged := strings.Cut(name, "#")
	if file == "" || strings.ContainsAny(file, "/?") {
		return false
	}
	if !ranged {
		return true
	}
	a, b, ok := strings.Cut(rng, "-")
	first, err1 := strconv.ParseUint(a, 10, 63)
	last, err2 := strconv.ParseUint(b, 10, 63)
	return ok && err1 == nil && err2 == nil && first <= last && RangeName(file, int64(first), int64(last)) == name
}

// Sum returns the hex SHA-256 of b.
func Sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// ForFolder builds the manifest of every segment file directly in dir:
// .m4s, .ts, .aac and the like whole, init segments included (DASH players
// load them through peers too); and an .mp4 indexed by a sidx (the DASH
// on-demand layout: one file per representation) as its byte ranges, the
// init segment before the sidx and each subsegment it indexes.
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
		ranges, err := SidxRanges(b)
		if err != nil {
			return nil, fmt.Errorf("hashfile: %s: %w", n, err)
		}
		if len(ranges) == 0 {
			m.SHA256[n] = Sum(b)
			continue
		}
		for _, r := range ranges {
			m.SHA256[RangeName(n, r[0], r[1])] = Sum(b[r[0] : r[1]+1])
		}
	}
	if len(m.SHA256) == 0 {
		return nil, errors.New("hashfile: no segments in " + dir)
	}
	return m, nil
}

func isSegment(name string) bool {
	switch path.Ext(name) {
	case ".m4s", ".ts", ".aac", ".m4a", ".m4v", ".cmfv", ".cmfa", ".mp4":
		return true
	}
	return false
}

// SidxRanges returns the byte ranges (first, last) of a file indexed by a
// top-level sidx: what precedes the sidx (the init segment), then each
// subsegment the sidx references. A file without a sidx has none.
func SidxRanges(b []byte) ([][2]int64, error) {
	for off := 0; off+8 <= len(b); {
		size := int(binary.BigEndian.Uint32(b[off:]))
		typ := string(b[off+4 : off+8])
		hdr := 8
		if size == 1 && off+16 <= len(b) {
			size, hdr = int(binary.BigEndian.Uint64(b[off+8:])), 16
		}
		if size < hdr || size > len(b)-off {
			return nil, nil // not a box structure we can walk: hash it whole
		}
		if typ == "moof" || typ == "mdat" {
			return nil, nil // fragments before any sidx: not an indexed file
		}
		if typ != "sidx" {
			off += size
			continue
		}
		p := b[off+hdr : off+size]
		at := 12 // version, flags, reference_ID, timescale
		if len(p) < at {
			return nil, errors.New("short sidx")
		}
		var first uint64
		if p[0] == 0 {
			if len(p) < at+8 {
				return nil, errors.New("short sidx")
			}
			first = uint64(binary.BigEndian.Uint32(p[at+4:]))
			at += 8
		} else {
			if len(p) < at+16 {
				return nil, errors.New("short sidx")
			}
			first = binary.BigEndian.Uint64(p[at+8:])
			at += 16
		}
		if len(p) < at+4 {
			return nil, errors.New("short sidx")
		}
		count := int(binary.BigEndian.Uint16(p[at+2:]))
		at += 4
		if len(p) < at+12*count {
			return nil, errors.New("short sidx references")
		}
		out := [][2]int64{{0, int64(off) - 1}}
		pos := uint64(off+size) + first
		for i := 0; i < count; i++ {
			ref := binary.BigEndian.Uint32(p[at+12*i:])
			if ref>>31 != 0 {
				return nil, errors.New("hierarchical sidx: not supported")
			}
			n := uint64(ref & 0x7fffffff)
			if n == 0 || pos+n > uint64(len(b)) {
				return nil, errors.New("sidx references bytes past the end of the file")
			}
			out = append(out, [2]int64{int64(pos), int64(pos + n - 1)})
			pos += n
		}
		if off == 0 {
			out = out[1:] // no init segment before the sidx
		}
		return out, nil
	}
	return nil, nil
}
