package hashfile

import (
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
	if len(m.SHA256) != 2 {
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
