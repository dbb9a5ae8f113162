package democdn

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// DASH players take one media component per representation (dash.js
// refuses muxed ones, as the DASH-IF guidelines do), while the demo stream
// muxes audio and video in each fMP4 file for HLS. The DASH view splits
// them as a packager would: an init segment per track, and per media
// segment a moof with that track's traf and an mdat with its samples.

// track is one media component of a rendition's init segment.
type track struct {
	id        uint32
	kind      string // "vide" or "soun"
	timescale uint32
	// trex defaults, for trafs that carry none.
	defDuration, defSize uint32
}

// tracks reads the tracks of an init segment.
func tracks(init []byte) ([]track, error) {
	var out []track
	var cur *track
	defaults := map[uint32][2]uint32{}
	var walk func(b []byte) error
	walk = func(b []byte) error {
		return boxes(b, func(typ string, s, e int) error {
			p := b[s:e]
			switch typ {
			case "moov", "mdia", "mvex":
				return walk(p)
			case "trak":
				out = append(out, track{})
				cur = &out[len(out)-1]
				return walk(p)
			case "tkhd": // version, flags, [times], track_ID
				if cur == nil {
					return errors.New("fmp4: tkhd outside a trak")
				}
				var err error
				cur.id, err = versioned(p, 12, 20, typ)
				return err
			case "mdhd": // version, flags, [times], timescale
				if cur == nil {
					return errors.New("fmp4: mdhd outside a trak")
				}
				var err error
				cur.timescale, err = versioned(p, 12, 20, typ)
				return err
			case "hdlr":
				if cur == nil || len(p) < 12 {
					return errors.New("fmp4: short hdlr")
				}
				cur.kind = string(p[8:12])
			case "trex": // version/flags, track_ID, description index, duration, size, flags
				if len(p) < 24 {
					return errors.New("fmp4: short trex")
				}
				defaults[binary.BigEndian.Uint32(p[4:])] = [2]uint32{binary.BigEndian.Uint32(p[12:]), binary.BigEndian.Uint32(p[16:])}
			}
			return nil
		})
	}
	if err := walk(init); err != nil {
		return nil, err
	}
	for i := range out {
		d := defaults[out[i].id]
		out[i].defDuration, out[i].defSize = d[0], d[1]
	}
	return out, nil
}

// box writes an ISO-BMFF box of type typ around payload.
func box(typ string, payload ...[]byte) []byte {
	n := 8
	for _, p := range payload {
		n += len(p)
	}
	out := make([]byte, 8, n)
	binary.BigEndian.PutUint32(out, uint32(n))
	copy(out[4:], typ)
	for _, p := range payload {
		out = append(out, p...)
	}
	return out
}

// initForTrack is an init segment with only track id: the other traks and
// their trex dropped (and udta, which describes the whole file).
func initForTrack(init []byte, id uint32) ([]byte, error) {
	var out []byte
	err := boxes(init, func(typ string, s, e int) error {
		if typ != "moov" {
			out = append(out, init[s-8:e]...) // ftyp: 32-bit sizes in this stream
			return nil
		}
		moov := init[s:e]
		var kept [][]byte
		err := boxes(moov, func(typ string, s, e int) error {
			switch typ {
			case "trak":
				ts, err := tracks(box("moov", moov[s-8:e]))
				if err != nil || len(ts) != 1 {
					return fmt.Errorf("fmp4: bad trak: %v", err)
				}
				if ts[0].id == id {
					kept = append(kept, moov[s-8:e])
				}
			case "mvex":
				mvex := moov[s:e]
				var inner [][]byte
				if err := boxes(mvex, func(typ string, s, e int) error {
					if typ != "trex" || (e-s >= 8 && binary.BigEndian.Uint32(mvex[s+4:]) == id) {
						inner = append(inner, mvex[s-8:e])
					}
					return nil
				}); err != nil {
					return err
				}
				kept = append(kept, box("mvex", inner...))
			case "udta":
			default:
				kept = append(kept, moov[s-8:e])
			}
			return nil
		})
		if err != nil {
			return err
		}
		out = append(out, box("moov", kept...)...)
		return nil
	})
	return out, err
}

// fragment is one track's part of a media segment.
type fragment struct {
	moof []byte // mfhd and the track's traf, data offsets pointing into mdat
	mdat []byte // the whole box
	// tfdt and duration, in the track's timescale.
	decodeTime, duration uint64
}

// fragmentForTrack cuts track t's fragment out of a muxed media segment
// (styp and sidx left out: the sidx indexes both tracks).
func fragmentForTrack(seg []byte, t track) (fragment, error) {
	var f fragment
	found := false
	err := boxes(seg, func(typ string, s, e int) error {
		if typ != "moof" {
			return nil
		}
		moofStart := s - 8
		moof := seg[s:e]
		var mfhd, traf []byte
		var dataStart, dataEnd int64 = -1, -1
		var truns []int // offsets of the traf's truns' data_offset fields, within traf
		err := boxes(moof, func(typ string, s, e int) error {
			switch typ {
			case "mfhd":
				mfhd = moof[s-8 : e]
			case "traf":
				tf := moof[s:e]
				var id, flags, defDur, defSize uint32
				var ds, de int64 = -1, -1
				var offs []int
				var dur uint64
				var tfdt uint64
				err := boxes(tf, func(typ string, s, e int) error {
					p := tf[s:e]
					switch typ {
					case "tfhd":
						if len(p) < 8 {
							return errors.New("fmp4: short tfhd")
						}
						flags = binary.BigEndian.Uint32(p) & 0xffffff
						id = binary.BigEndian.Uint32(p[4:])
						if flags&0x1 != 0 {
							return errors.New("fmp4: base_data_offset in tfhd: not supported")
						}
						at := 8
						if flags&0x2 != 0 {
							at += 4
						}
						defDur, defSize = t.defDuration, t.defSize
						if flags&0x8 != 0 && len(p) >= at+4 {
							defDur = binary.BigEndian.Uint32(p[at:])
							at += 4
						}
						if flags&0x10 != 0 && len(p) >= at+4 {
							defSize = binary.BigEndian.Uint32(p[at:])
						}
					case "tfdt":
						switch {
						case len(p) >= 12 && p[0] == 1:
							tfdt = binary.BigEndian.Uint64(p[4:])
						case len(p) >= 8:
							tfdt = uint64(binary.BigEndian.Uint32(p[4:]))
						}
					case "trun":
						if len(p) < 12 {
							return errors.New("fmp4: short trun")
						}
						fl := binary.BigEndian.Uint32(p) & 0xffffff
						n := int(binary.BigEndian.Uint32(p[4:]))
						if fl&0x1 == 0 {
							return errors.New("fmp4: trun without data_offset: not supported")
						}
						off := int64(int32(binary.BigEndian.Uint32(p[8:])))
						at := 12
						if fl&0x4 != 0 {
							at += 4
						}
						per := 0
						for _, bit := range []uint32{0x100, 0x200, 0x400, 0x800} {
							if fl&bit != 0 {
								per += 4
							}
						}
						if n < 0 || len(p) < at+n*per {
							return errors.New("fmp4: short trun samples")
						}
						var size int64
						for i := 0; i < n; i++ {
							q := p[at+i*per:]
							d, sz := defDur, defSize
							if fl&0x100 != 0 {
								d = binary.BigEndian.Uint32(q)
								q = q[4:]
							}
							if fl&0x200 != 0 {
								sz = binary.BigEndian.Uint32(q)
							}
							dur += uint64(d)
							size += int64(sz)
						}
						if ds < 0 || off < ds {
							ds = off
						}
						if off+size > de {
							de = off + size
						}
						offs = append(offs, s+8)
					}
					return nil
				})
				if err != nil {
					return err
				}
				if id == t.id {
					traf, dataStart, dataEnd, truns = moof[s-8:e], ds, de, offs
					f.decodeTime, f.duration = tfdt, dur
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if traf == nil || mfhd == nil || dataStart < 0 || moofStart+int(dataEnd) > len(seg) {
			return fmt.Errorf("fmp4: no usable traf for track %d", t.id)
		}
		f.moof = box("moof", mfhd, traf)
		// The samples move to just after the new moof and the mdat header.
		shift := int64(len(f.moof)+8) - dataStart
		trafAt := 8 + len(mfhd) // traf's position in the new moof
		for _, o := range truns {
			at := trafAt + 8 + o
			v := int64(int32(binary.BigEndian.Uint32(f.moof[at:]))) + shift
			binary.BigEndian.PutUint32(f.moof[at:], uint32(int32(v)))
		}
		f.mdat = box("mdat", seg[moofStart+int(dataStart):moofStart+int(dataEnd)])
		found = true
		return nil
	})
	if err == nil && !found {
		err = errors.New("fmp4: no moof")
	}
	return f, err
}

// sidx indexes fragments stored one after another right after it.
func sidx(t track, frags []fragment) []byte {
	p := make([]byte, 24, 24+12*len(frags))
	// version 0, flags 0; reference_ID; timescale; earliest presentation
	// time; first_offset 0; reserved; reference_count.
	binary.BigEndian.PutUint32(p[4:], t.id)
	binary.BigEndian.PutUint32(p[8:], t.timescale)
	if len(frags) > 0 {
		binary.BigEndian.PutUint32(p[12:], uint32(frags[0].decodeTime))
	}
	binary.BigEndian.PutUint16(p[22:], uint16(len(frags)))
	for _, f := range frags {
		var r [12]byte
		binary.BigEndian.PutUint32(r[0:], uint32(len(f.moof)+len(f.mdat))) // reference_type 0: media
		binary.BigEndian.PutUint32(r[4:], uint32(f.duration))
		binary.BigEndian.PutUint32(r[8:], 0x90000000) // starts with SAP, type 1
		p = append(p, r[:]...)
	}
	return box("sidx", p)
}
