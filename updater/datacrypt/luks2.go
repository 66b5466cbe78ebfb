package datacrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"golang.org/x/crypto/xts"

	"github.com/plumb-os/plumb/format/datapart"
)

// The LUKS2 header this package writes (the on-disk format is cryptsetup's
// "LUKS2 On-Disk Format Specification"): two 16 KiB header copies (4 KiB
// binary header + 12 KiB JSON), one keyslot (the recovery key) at 32 KiB,
// and the data segment at datapart.SegmentOffset, aes-xts-plain64 with a
// 512-bit volume key and 512-byte sectors.
const (
	hdrSize       = 16 << 10
	binHdrSize    = 4096
	jsonSize      = hdrSize - binHdrSize
	keyslotOffset = 2 * hdrSize
	keySize       = 64 // aes-xts-plain64 with AES-256
	stripes       = 4000
	// keyslotArea is the AF-split key material, rounded up to 4 KiB.
	keyslotArea = (keySize*stripes + 4095) / 4096 * 4096
	cipher      = "aes-xts-plain64"
	sectorSize  = 512
	// kdfIterations: the recovery key is 256 random bits, so the KDF adds
	// no strength; 1000 is LUKS2's minimum for pbkdf2.
	kdfIterations = 1000
	// TokenType names Plumb's token: the volume key sealed in the TPM.
	TokenType = "plumb-tpm2"
)

var (
	magic1 = []byte("LUKS\xba\xbe")
	magic2 = []byte("SKUL\xba\xbe")
)

// IsLUKS2 tells whether block (a partition's first bytes) is a LUKS2 header.
func IsLUKS2(block []byte) bool {
	return len(block) >= 8 && bytes.Equal(block[:6], magic1) && binary.BigEndian.Uint16(block[6:]) == 2
}

type luksJSON struct {
	Keyslots map[string]keyslot         `json:"keyslots"`
	Tokens   map[string]json.RawMessage `json:"tokens"`
	Segments map[string]segment         `json:"segments"`
	Digests  map[string]digest          `json:"digests"`
	Config   struct {
		JSONSize     string `json:"json_size"`
		KeyslotsSize string `json:"keyslots_size"`
	} `json:"config"`
}

type keyslot struct {
	Type    string `json:"type"`
	KeySize int    `json:"key_size"`
	AF      struct {
		Type    string `json:"type"`
		Stripes int    `json:"stripes"`
		Hash    string `json:"hash"`
	} `json:"af"`
	Area struct {
		Type       string `json:"type"`
		Offset     string `json:"offset"`
		Size       string `json:"size"`
		Encryption string `json:"encryption"`
		KeySize    int    `json:"key_size"`
	} `json:"area"`
	KDF struct {
		Type       string `json:"type"`
		Hash       string `json:"hash"`
		Iterations int    `json:"iterations"`
		Salt       string `json:"salt"`
	} `json:"kdf"`
}

type segment struct {
	Type       string `json:"type"`
	Offset     string `json:"offset"`
	Size       string `json:"size"`
	IVTweak    string `json:"iv_tweak"`
	Encryption string `json:"encryption"`
	SectorSize int    `json:"sector_size"`
}

type digest struct {
	Type       string   `json:"type"`
	Keyslots   []string `json:"keyslots"`
	Segments   []string `json:"segments"`
	Hash       string   `json:"hash"`
	Iterations int      `json:"iterations"`
	Salt       string   `json:"salt"`
	Digest     string   `json:"digest"`
}

// Header is what the device needs from a LUKS2 header: the data segment
// and the digest that tells a right volume key from a wrong one.
type Header struct {
	// Offset is the data segment's byte offset in the partition.
	Offset     int64
	Encryption string
	SectorSize int
	// Token is Plumb's token (TokenType), nil if the header has none.
	Token  json.RawMessage
	digest digest
}

// CheckKey tells whether vk is the volume key of the header.
func (h *Header) CheckKey(vk []byte) error {
	salt, err := base64.StdEncoding.DecodeString(h.digest.Salt)
	if err != nil {
		return fmt.Errorf("LUKS2 digest salt: %w", err)
	}
	want, err := base64.StdEncoding.DecodeString(h.digest.Digest)
	if err != nil {
		return fmt.Errorf("LUKS2 digest: %w", err)
	}
	got, err := pbkdf2.Key(sha256.New, string(vk), salt, h.digest.Iterations, len(want))
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return errors.New("the key does not match the LUKS2 volume key digest")
	}
	return nil
}

// ReadHeader reads and checks the primary LUKS2 header of r (the secondary
// if the primary's checksum fails) and returns its data segment.
func ReadHeader(r io.ReaderAt) (*Header, error) {
	var firstErr error
	for _, off := range []int64{0, hdrSize} {
		h, err := readHeaderAt(r, off)
		if err == nil {
			return h, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

func readHeaderAt(r io.ReaderAt, off int64) (*Header, error) {
	b := make([]byte, hdrSize)
	if _, err := r.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("reading LUKS2 header at %d: %w", off, err)
	}
	want := magic1
	if off != 0 {
		want = magic2
	}
	if !bytes.Equal(b[:6], want) || binary.BigEndian.Uint16(b[6:]) != 2 {
		return nil, fmt.Errorf("LUKS2 header at %d: expected magic %q version 2", off, want)
	}
	if n := binary.BigEndian.Uint64(b[8:]); n != hdrSize {
		return nil, fmt.Errorf("LUKS2 header at %d: header size %d, expected %d (Plumb's layout)", off, n, hdrSize)
	}
	sum := make([]byte, 32)
	copy(sum, b[448:480])
	clear(b[448:512])
	if got := sha256.Sum256(b); !bytes.Equal(got[:], sum) {
		return nil, fmt.Errorf("LUKS2 header at %d: checksum mismatch", off)
	}
	js := b[binHdrSize:]
	if i := bytes.IndexByte(js, 0); i >= 0 {
		js = js[:i]
	}
	var j luksJSON
	if err := json.Unmarshal(js, &j); err != nil {
		return nil, fmt.Errorf("LUKS2 header at %d: JSON: %w", off, err)
	}
	seg, ok := j.Segments["0"]
	if !ok || seg.Type != "crypt" {
		return nil, fmt.Errorf("LUKS2 header: expected a crypt segment 0")
	}
	segOff, err := strconv.ParseInt(seg.Offset, 10, 64)
	if err != nil || segOff <= 0 || segOff%sectorSize != 0 {
		return nil, fmt.Errorf("LUKS2 segment 0: offset %q: expected a positive multiple of %d", seg.Offset, sectorSize)
	}
	if seg.Encryption != cipher || seg.SectorSize != sectorSize || seg.Size != "dynamic" || (seg.IVTweak != "0" && seg.IVTweak != "") {
		return nil, fmt.Errorf("LUKS2 segment 0: %s, %d-byte sectors, size %s, iv_tweak %s: expected %s, %d, dynamic, 0", seg.Encryption, seg.SectorSize, seg.Size, seg.IVTweak, cipher, sectorSize)
	}
	h := &Header{Offset: segOff, Encryption: seg.Encryption, SectorSize: seg.SectorSize}
	for _, d := range j.Digests {
		for _, s := range d.Segments {
			if s == "0" && d.Type == "pbkdf2" && d.Hash == "sha256" {
				h.digest = d
			}
		}
	}
	if h.digest.Type == "" {
		return nil, fmt.Errorf("LUKS2 header: no pbkdf2-sha256 digest for segment 0")
	}
	for _, t := range j.Tokens {
		var tt struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(t, &tt) == nil && tt.Type == TokenType {
			h.Token = t
		}
	}
	return h, nil
}

// format writes a LUKS2 header for volume key vk to w (a partition of
// partSize bytes): keyslot 0 opens it with the recovery passphrase, and
// token (a JSON object with "type" and "keyslots") is token 0. It writes
// the keyslot area, then the secondary header, then the primary, so that
// what was at offset 0 stays until the very end.
func format(w io.WriterAt, vk []byte, recovery string, token any) error {
	if len(vk) != keySize {
		return fmt.Errorf("volume key: expected %d bytes, got %d", keySize, len(vk))
	}
	random := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	b64 := base64.StdEncoding.EncodeToString

	// Keyslot 0: the recovery passphrase through pbkdf2 encrypts the
	// AF-split volume key.
	ksSalt := random(32)
	ksKey, err := pbkdf2.Key(sha256.New, recovery, ksSalt, kdfIterations, keySize)
	if err != nil {
		return err
	}
	material := afSplit(vk, stripes)
	enc, err := encryptSectors(ksKey, material, 0)
	if err != nil {
		return err
	}
	area := make([]byte, keyslotArea)
	copy(area, enc)
	if _, err := w.WriteAt(area, keyslotOffset); err != nil {
		return fmt.Errorf("writing LUKS2 keyslot: %w", err)
	}
	var ks keyslot
	ks.Type, ks.KeySize = "luks2", keySize
	ks.AF.Type, ks.AF.Stripes, ks.AF.Hash = "luks1", stripes, "sha256"
	ks.Area.Type, ks.Area.Offset, ks.Area.Size, ks.Area.Encryption, ks.Area.KeySize = "raw", strconv.Itoa(keyslotOffset), strconv.Itoa(keyslotArea), cipher, keySize
	ks.KDF.Type, ks.KDF.Hash, ks.KDF.Iterations, ks.KDF.Salt = "pbkdf2", "sha256", kdfIterations, b64(ksSalt)

	dSalt := random(32)
	dg, err := pbkdf2.Key(sha256.New, string(vk), dSalt, kdfIterations, sha256.Size)
	if err != nil {
		return err
	}
	tok, err := json.Marshal(token)
	if err != nil {
		return err
	}
	j := luksJSON{
		Keyslots: map[string]keyslot{"0": ks},
		Tokens:   map[string]json.RawMessage{"0": tok},
		Segments: map[string]segment{"0": {Type: "crypt", Offset: strconv.Itoa(datapart.SegmentOffset), Size: "dynamic", IVTweak: "0", Encryption: cipher, SectorSize: sectorSize}},
		Digests:  map[string]digest{"0": {Type: "pbkdf2", Keyslots: []string{"0"}, Segments: []string{"0"}, Hash: "sha256", Iterations: kdfIterations, Salt: b64(dSalt), Digest: b64(dg)}},
	}
	j.Config.JSONSize = strconv.Itoa(jsonSize)
	j.Config.KeyslotsSize = strconv.Itoa(datapart.SegmentOffset - keyslotOffset)
	js, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if len(js) >= jsonSize {
		return fmt.Errorf("LUKS2 JSON: %d bytes, expected less than %d", len(js), jsonSize)
	}
	uuid := random(16)
	uuid[6] = uuid[6]&0x0f | 0x40
	uuid[8] = uuid[8]&0x3f | 0x80
	u := hex.EncodeToString(uuid)
	uuidStr := u[:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:]
	for _, off := range []int64{hdrSize, 0} {
		b := make([]byte, hdrSize)
		if off == 0 {
			copy(b, magic1)
		} else {
			copy(b, magic2)
		}
		binary.BigEndian.PutUint16(b[6:], 2)
		binary.BigEndian.PutUint64(b[8:], hdrSize)
		binary.BigEndian.PutUint64(b[16:], 1) // seqid
		copy(b[72:], "sha256")
		copy(b[104:168], random(64))
		copy(b[168:208], uuidStr)
		binary.BigEndian.PutUint64(b[256:], uint64(off))
		copy(b[binHdrSize:], js)
		sum := sha256.Sum256(b)
		copy(b[448:], sum[:])
		if _, err := w.WriteAt(b, off); err != nil {
			return fmt.Errorf("writing LUKS2 header at %d: %w", off, err)
		}
	}
	return nil
}

// afSplit is LUKS's anti-forensic split of key into n stripes with sha256
// diffusion: n-1 random stripes and one that only all of them recover.
func afSplit(key []byte, n int) []byte {
	out := make([]byte, len(key)*n)
	d := make([]byte, len(key))
	for i := 0; i < n-1; i++ {
		s := out[i*len(key) : (i+1)*len(key)]
		rand.Read(s)
		subtle.XORBytes(d, d, s)
		d = diffuse(d)
	}
	subtle.XORBytes(out[(n-1)*len(key):], d, key)
	return out
}

// diffuse hashes each 32-byte block of d with its index (LUKS's H1).
func diffuse(d []byte) []byte {
	out := make([]byte, len(d))
	for i := 0; i*sha256.Size < len(d); i++ {
		end := min((i+1)*sha256.Size, len(d))
		h := sha256.New()
		binary.Write(h, binary.BigEndian, uint32(i))
		h.Write(d[i*sha256.Size : end])
		copy(out[i*sha256.Size:end], h.Sum(nil))
	}
	return out
}

// encryptSectors encrypts b (a multiple of 512 bytes) with aes-xts-plain64
// under key, the first sector being number first.
func encryptSectors(key, b []byte, first uint64) ([]byte, error) {
	c, err := xts.NewCipher(aes.NewCipher, key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(b))
	for i := 0; i*sectorSize < len(b); i++ {
		c.Encrypt(out[i*sectorSize:(i+1)*sectorSize], b[i*sectorSize:(i+1)*sectorSize], first+uint64(i))
	}
	return out, nil
}

// decryptSectors inverts encryptSectors.
func decryptSectors(key, b []byte, first uint64) ([]byte, error) {
	c, err := xts.NewCipher(aes.NewCipher, key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(b))
	for i := 0; i*sectorSize < len(b); i++ {
		c.Decrypt(out[i*sectorSize:(i+1)*sectorSize], b[i*sectorSize:(i+1)*sectorSize], first+uint64(i))
	}
	return out, nil
}
