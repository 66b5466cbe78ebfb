package delta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"index/suffixarray"
	"io"
)

// This file is the encoder's side of a UNIT's patch: Colin Percival's
// bsdiff matching (a suffix array of the old content, exact matches
// extended into approximate ones), written UNCOMPRESSED into the body so
// that the body's one zstd stream compresses the patches of all files
// together: the difference bytes of a matched region are mostly zeros, and
// what is not zero (a shifted address, a version string) repeats across
// files.

// ctrl is one patch instruction: add bytes (new = old + diff) from the old
// content at the current old position, then extra bytes (literal), then
// move the old position by seek.
type ctrl struct {
	add, extra int
	seek       int64
}

// suffixArray returns the suffix array of b. Go's index/suffixarray
// builds it (SA-IS) but keeps it private; its serialisation (length, data,
// then the array as varint chunks) is read back here. A wrong array would
// only give worse matches: every match is checked against the bytes.
func suffixArray(b []byte) ([]int32, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) >= 1<<31-1 {
		return nil, errors.New("suffix array: content too large")
	}
	idx := suffixarray.New(b)
	r := &saReader{sa: make([]int32, 0, len(b)), n: -1, data: len(b)}
	if err := idx.Write(r); err != nil {
		return nil, err
	}
	if len(r.sa) != len(b) || r.err != nil {
		return nil, errors.New("suffix array: unexpected index serialisation")
	}
	return r.sa, nil
}

// saReader parses index/suffixarray's Write output as it is written.
type saReader struct {
	sa   []int32
	n    int // -1: expecting the length; then data bytes left to skip
	data int
	err  error
}

func (s *saReader) Write(p []byte) (int, error) {
	total := len(p)
	if s.n == -1 {
		if len(p) < binary.MaxVarintLen64 {
			s.err = io.ErrShortWrite
			return 0, s.err
		}
		v, _ := binary.Varint(p)
		if int(v) != s.data {
			s.err = errors.New("length mismatch")
			return 0, s.err
		}
		s.n = s.data
		p = p[binary.MaxVarintLen64:]
	}
	if s.n > 0 {
		k := min(s.n, len(p))
		s.n -= k
		p = p[k:]
		if len(p) == 0 {
			return total, nil
		}
	}
	// A chunk: its size (varint in MaxVarintLen64 bytes, counting itself),
	// then uvarints. index/suffixarray writes each chunk in one Write.
	if len(p) < binary.MaxVarintLen64 {
		s.err = io.ErrShortWrite
		return 0, s.err
	}
	size, _ := binary.Varint(p)
	if int(size) != len(p) {
		s.err = errors.New("chunk size mismatch")
		return 0, s.err
	}
	for q := p[binary.MaxVarintLen64:]; len(q) > 0; {
		v, w := binary.Uvarint(q)
		if w <= 0 || v >= uint64(s.data) {
			s.err = errors.New("bad suffix")
			return 0, s.err
		}
		s.sa = append(s.sa, int32(v))
		q = q[w:]
	}
	return total, nil
}

func matchLen(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for i+8 <= n && binary.LittleEndian.Uint64(a[i:]) == binary.LittleEndian.Uint64(b[i:]) {
		i += 8
	}
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}

// search finds the longest prefix of nw that occurs in old.
func search(sa []int32, old, nw []byte) (pos, n int) {
	st, en := 0, len(sa)-1
	for en-st >= 2 {
		x := st + (en-st)/2
		p := old[sa[x]:]
		if bytes.Compare(p[:min(len(p), len(nw))], nw[:min(len(p), len(nw))]) < 0 {
			st = x
		} else {
			en = x
		}
	}
	x := matchLen(old[sa[st]:], nw)
	y := matchLen(old[sa[en]:], nw)
	if x > y {
		return int(sa[st]), x
	}
	return int(sa[en]), y
}

// bsdiff returns the patch instructions turning old into nw.
func bsdiff(old, nw []byte) ([]ctrl, error) {
	if len(old) == 0 || len(nw) == 0 {
		if len(nw) == 0 {
			return nil, nil
		}
		return []ctrl{{extra: len(nw)}}, nil
	}
	sa, err := suffixArray(old)
	if err != nil {
		return nil, err
	}
	var out []ctrl
	oldsize, newsize := len(old), len(nw)
	var scan, pos, ln, lastscan, lastpos, lastoffset int
	for scan < newsize {
		oldscore := 0
		scan += ln
		scsc := scan
		for ; scan < newsize; scan++ {
			pos, ln = search(sa, old, nw[scan:])
			for ; scsc < scan+ln; scsc++ {
				if scsc+lastoffset < oldsize && old[scsc+lastoffset] == nw[scsc] {
					oldscore++
				}
			}
			if (ln == oldscore && ln != 0) || ln > oldscore+8 {
				break
			}
			if scan+lastoffset < oldsize && old[scan+lastoffset] == nw[scan] {
				oldscore--
			}
		}
		if ln != oldscore || scan == newsize {
			s, sf, lenf := 0, 0, 0
			for i := 0; lastscan+i < scan && lastpos+i < oldsize; {
				if old[lastpos+i] == nw[lastscan+i] {
					s++
				}
				i++
				if s*2-i > sf*2-lenf {
					sf, lenf = s, i
				}
			}
			lenb := 0
			if scan < newsize {
				s, sb := 0, 0
				for i := 1; scan >= lastscan+i && pos >= i; i++ {
					if old[pos-i] == nw[scan-i] {
						s++
					}
					if s*2-i > sb*2-lenb {
						sb, lenb = s, i
					}
				}
			}
			if lastscan+lenf > scan-lenb {
				overlap := (lastscan + lenf) - (scan - lenb)
				s, ss, lens := 0, 0, 0
				for i := 0; i < overlap; i++ {
					if nw[lastscan+lenf-overlap+i] == old[lastpos+lenf-overlap+i] {
						s++
					}
					if nw[scan-lenb+i] == old[pos-lenb+i] {
						s--
					}
					if s > ss {
						ss, lens = s, i+1
					}
				}
				lenf += lens - overlap
				lenb -= lens
			}
			out = append(out, ctrl{
				add:   lenf,
				extra: (scan - lenb) - (lastscan + lenf),
				seek:  int64((pos - lenb) - (lastpos + lenf)),
			})
			lastscan, lastpos, lastoffset = scan-lenb, pos-lenb, pos-scan
		}
	}
	return out, nil
}
