package democdn

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The live view loops the VOD title. A real live encoder's timestamps never
// jump back, so instead of a discontinuity at each loop the origin shifts
// each segment's decode time (tfdt) forward by the loops elapsed: players
// see one continuous stream, as from an encoder that never stops.

// box walks the ISO-BMFF boxes in b, calling f with each box's type and
// its payload's offset and end within b.
func boxes(b []byte, f func(typ string, start, end int) error) error {
	for off := 0; off < len(b); {
		if len(b)-off < 8 {
			return errors.New("fmp4: truncated box header")
		}
		size := int(binary.BigEndian.Uint32(b[off:]))
		typ := string(b[off+4 : off+8])
		hdr := 8
		if size == 1 {
			if len(b)-off < 16 {
				return errors.New("fmp4: truncated large box header")
			}
			size = int(binary.BigEndian.Uint64(b[off+8:]))
			hdr = 16
		}
		if size < hdr || size > len(b)-off {
			return fmt.Errorf("fmp4: box %q of size %d does not fit", typ, size)
		}
		if err := f(typ, off+hdr, off+size); err != nil {
			return err
		}
		off += size
	}
	return nil
}

// timescales maps each track id of an init segment to its timescale.
func timescales(init []byte) (map[uint32]uint32, error) {
	ts, err := tracks(init)
	if err != nil {
		return nil, err
	}
	out := map[uint32]uint32{}
	for _, t := range ts {
		out[t.id] = t.timescale
	}
	if len(out) == 0 {
		return nil, errors.New("fmp4: no tracks in the init segment")
	}
	return out, nil
}

// versioned reads the 32-bit field of a full box (tkhd, mdhd) that sits
// at at0 in a version-0 box and at at1 in a version-1 one (64-bit times).
func versioned(p []byte, at0, at1 int, typ string) (uint32, error) {
	at := at0
	if len(p) > 0 && p[0] == 1 {
		at = at1
	}
	if len(p) < at+4 {
		return 0, errors.New("fmp4: short " + typ)
	}
	return binary.BigEndian.Uint32(p[at:]), nil
}

// shiftDecodeTime returns a copy of the media segment seg with every
// track's tfdt moved forward by seconds (in each track's timescale).
func shiftDecodeTime(seg []byte, ts map[uint32]uint32, seconds uint64) ([]byte, error) {
	out := append([]byte(nil), seg...)
	if seconds == 0 {
		return out, nil
	}
	var track uint32
	var walk func(base int, b []byte) error
	walk = func(base int, b []byte) error {
		return boxes(b, func(typ string, s, e int) error {
			p := out[base+s : base+e]
			switch typ {
			case "moof", "traf":
				return walk(base+s, p)
			case "tfhd":
				if len(p) < 8 {
					return errors.New("fmp4: short tfhd")
				}
				track = binary.BigEndian.Uint32(p[4:])
			case "tfdt":
				scale, ok := ts[track]
				if !ok {
					return fmt.Errorf("fmp4: tfdt of unknown track %d", track)
				}
				add := seconds * uint64(scale)
				switch {
				case len(p) >= 12 && p[0] == 1:
					binary.BigEndian.PutUint64(p[4:], binary.BigEndian.Uint64(p[4:])+add)
				case len(p) >= 8 && p[0] == 0:
					v := uint64(binary.BigEndian.Uint32(p[4:])) + add
					if v > 0xffffffff {
						return errors.New("fmp4: 32-bit tfdt overflows: package with 64-bit decode times")
					}
					binary.BigEndian.PutUint32(p[4:], uint32(v))
				default:
					return errors.New("fmp4: bad tfdt")
				}
			}
			return nil
		})
	}
	if err := walk(0, seg); err != nil {
		return nil, err
	}
	return out, nil
}
