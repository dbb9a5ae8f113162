package hashfile

import (
	"encoding/binary"
	"testing"
	"testing/fstest"
)

func TestRoundTrip(t *testing.T) {
	fsys := fstest.MapFS{
		"v/000.m4s":    {Data: []byte("a")},
		"v/001.m4s":    {Data: []byte("b")},
		"v/init.mp4":   {Data: []byte("init")},
		"v/index.m3u8": {Data: []byte("#EXTM3U")},
	}
	m, err := ForFolder(fsys, "v")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.SHA256) != 3 { // the init segment too: DASH players load it through peers
		t.Fatalf("listed %v", m.SHA256)
	}
	b, _ := m.Encode()
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if Sum([]byte("a")) != "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb" || got["000.m4s"][0] != 0xca {
		t.Fatalf("decoded %x", got["000.m4s"])
	}
}

// TestSidxRanges: an .mp4 indexed by a sidx is listed as its byte ranges:
// the init segment before the sidx, and each subsegment it references.
func TestSidxRanges(t *testing.T) {
	box := func(typ string, payload []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(8+len(payload)))
		return append(append(b, typ...), payload...)
	}
	init := append(box("ftyp", []byte("iso6")), box("moov", make([]byte, 20))...)
	sidx := make([]byte, 24)
	binary.BigEndian.PutUint16(sidx[22:], 2) // two references
	sidx = binary.BigEndian.AppendUint32(sidx, 100)
	sidx = append(sidx, make([]byte, 8)...)
	sidx = binary.BigEndian.AppendUint32(sidx, 50)
	sidx = append(sidx, make([]byte, 8)...)
	file := append(append(init, box("sidx", sidx)...), make([]byte, 150)...)
	m, err := ForFolder(fstest.MapFS{"v.mp4": {Data: file}}, ".")
	if err != nil {
		t.Fatal(err)
	}
	media := int64(len(file) - 150)
	want := []string{
		RangeName("v.mp4", 0, int64(len(init))-1),
		RangeName("v.mp4", media, media+99),
		RangeName("v.mp4", media+100, media+149),
	}
	if len(m.SHA256) != len(want) {
		t.Fatalf("listed %v, want %v", m.SHA256, want)
	}
	for _, n := range want {
		if _, ok := m.SHA256[n]; !ok {
			t.Fatalf("listed %v, want %v", m.SHA256, want)
		}
	}
	b, _ := m.Encode()
	if _, err := Decode(b); err != nil {
		t.Fatal(err)
	}
	// A sidx pointing past the end is an error, not a panic.
	if _, err := SidxRanges(file[:len(file)-1]); err == nil {
		t.Fatal("a truncated file was indexed")
	}
}

func FuzzSidxRanges(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x08sidx"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := SidxRanges(b)
		if err != nil {
			return
		}
		for _, r := range rs {
			if r[0] < 0 || r[1] < r[0] || r[1] >= int64(len(b)) {
				t.Fatalf("range %v outside %d bytes", r, len(b))
			}
		}
	})
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"version":1,"sha256":{"000.m4s":"ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"}}`))
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		for name := range m {
			if name == "" {
				t.Fatal("empty name accepted")
			}
		}
	})
}
