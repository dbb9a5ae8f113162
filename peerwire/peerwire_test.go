package peerwire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		b    []byte
		want Message
	}{
		{Have(HaveReplace, []uint64{1, 2, 1 << 40}), Message{Type: TypeHave, Flags: HaveReplace, Seqs: []uint64{1, 2, 1 << 40}}},
		{Have(HaveAdd, nil), Message{Type: TypeHave, Seqs: []uint64{}}},
		{Loading([]uint64{7}), Message{Type: TypeLoading, Seqs: []uint64{7}}},
		{Request(9, 1<<33, 100), Message{Type: TypeRequest, ID: 9, Seq: 1 << 33, Offset: 100}},
		{AppendData(nil, 3, 10, 20, []byte("0123456789")), Message{Type: TypeData, ID: 3, Offset: 10, Total: 20, Data: []byte("0123456789")}},
		{Cancel(4), Message{Type: TypeCancel, ID: 4}},
		{Absent(5), Message{Type: TypeAbsent, ID: 5}},
		{Status(StatusNoSeed), Message{Type: TypeStatus, Flags: StatusNoSeed}},
		{Status(0x81), Message{Type: TypeStatus, Flags: 0x81}}, // flags of later versions pass
	} {
		got, err := Decode(tc.b)
		if err != nil {
			t.Fatalf("%v: %v", tc.want.Type, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("got %+v, want %+v", got, tc.want)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":            nil,
		"other version":    {2, 1, 0, 0, 0},
		"unknown type":     {1, 99},
		"have count lies":  {1, 1, 0, 0, 5, 0},
		"have bad flags":   {1, 1, 9, 0, 0},
		"short request":    {1, 3, 0, 0},
		"long status":      {1, 7, 1, 0},
		"chunk past total": AppendData(nil, 1, 15, 20, []byte("0123456789")),
		"empty chunk":      AppendData(nil, 1, 0, 20, nil),
		"zero total":       AppendData(nil, 1, 0, 0, []byte("x")),
		"oversized":        AppendData(nil, 1, 0, MaxSegmentSize, make([]byte, MaxChunk+1)),
	} {
		_, err := Decode(b)
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		if errors.Is(err, ErrUnknownType) != (name == "unknown type") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzDecode: never panics; anything accepted re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(Have(HaveReplace, []uint64{1, 2}))
	f.Add(Loading([]uint64{3}))
	f.Add(Request(1, 2, 3))
	f.Add(AppendData(nil, 1, 0, 4, []byte("abcd")))
	f.Add(Cancel(1))
	f.Add(Absent(1))
	f.Add(Status(StatusNoSeed))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		var out []byte
		switch m.Type {
		case TypeHave:
			out = Have(m.Flags, m.Seqs)
		case TypeLoading:
			out = Loading(m.Seqs)
		case TypeRequest:
			out = Request(m.ID, m.Seq, m.Offset)
		case TypeData:
			out = AppendData(nil, m.ID, m.Offset, m.Total, m.Data)
		case TypeCancel:
			out = Cancel(m.ID)
		case TypeStatus:
			out = Status(m.Flags)
		case TypeAbsent:
			out = Absent(m.ID)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("decoded %x as %+v, re-encodes to %x", b, m, out)
		}
	})
}
