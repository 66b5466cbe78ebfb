package attest

import (
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/plumb-os/plumb/format/attestapi"
	"github.com/plumb-os/plumb/internal/atomicfile"
)

// Files Export writes, in the formats tpm2_checkquote (tpm2-tools) reads.
const (
	ExportQuote     = "quote.msg"     // TPMS_ATTEST
	ExportSignature = "quote.sig"     // TPMT_SIGNATURE
	ExportAKPEM     = "ak.pem"        // the AK, PKIX PEM
	ExportPCRs      = "pcrs.bin"      // sha256 PCRs 0-15 as tpm2_quote -o writes them
	ExportNonce     = "nonce.hex"     // the nonce, hex
	ExportScript    = "checkquote.sh" // the tpm2_checkquote command line
)

// CheckquoteArgs are the tpm2_checkquote arguments for an export in dir
// checked against nonce.
func CheckquoteArgs(dir string, nonce []byte) []string {
	return []string{
		"-u", filepath.Join(dir, ExportAKPEM),
		"-m", filepath.Join(dir, ExportQuote),
		"-s", filepath.Join(dir, ExportSignature),
		"-f", filepath.Join(dir, ExportPCRs),
		"-g", "sha256",
		"-q", hex.EncodeToString(nonce),
	}
}

// Export writes the quote, its signature, the AK and the PCR values of ev
// into dir (created if needed) for an independent check with tpm2-tools:
//
//	tpm2_checkquote -u ak.pem -m quote.msg -s quote.sig -f pcrs.bin \
//	    -g sha256 -q NONCE_HEX
func Export(ev *attestapi.Evidence, dir string) error {
	pub, err := tpm2.DecodePublic(ev.AKPublic)
	if err != nil {
		return fmt.Errorf("ak_public: %w", err)
	}
	key, err := pub.Key()
	if err != nil {
		return fmt.Errorf("ak_public: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return fmt.Errorf("ak_public: %w", err)
	}
	pcrs := serializedPCRs(ev.PCRs)
	args := CheckquoteArgs(".", ev.Nonce)
	script := "#!/bin/sh\n# Checks the quote with tpm2-tools, independently of Plumb.\nset -e\ncd \"$(dirname \"$0\")\"\nexec tpm2_checkquote " + strings.Join(args, " ") + "\n"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{ExportQuote, ev.Quote.Attest, 0o644},
		{ExportSignature, ev.Quote.Signature, 0o644},
		{ExportAKPEM, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644},
		{ExportPCRs, pcrs, 0o644},
		{ExportNonce, []byte(hex.EncodeToString(ev.Nonce) + "\n"), 0o644},
		{ExportScript, []byte(script), 0o755},
	} {
		if err := atomicfile.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// serializedPCRs encodes sha256 PCRs 0-15 the way tpm2-tools' tpm2_quote
// -o (format "serialized", its default) writes them and tpm2_checkquote -f
// reads them: the C structures of tpm2-tools on a little-endian 64-bit
// host, a TPML_PCR_SELECTION (count, then 16 TPMS_PCR_SELECTION of 8 bytes
// each: hash, sizeofSelect, pcrSelect[4], padding), a uint32 count of
// TPML_DIGEST, then each TPML_DIGEST (count, then 8 TPM2B_DIGEST of a
// uint16 size and a 64-byte buffer). The plain concatenation of values
// with -l sha256:0,...,15 fails in tpm2-tools 5.4 once 8 values are
// given ("Something wrong, trying to print but nothing more").
func serializedPCRs(pcrs map[int][]byte) []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, 1)
	b = le.AppendUint16(b, uint16(tpm2.AlgSHA256))
	b = append(b, 3, 0xff, 0xff, 0x00, 0x00, 0) // sizeofSelect, PCRs 0-15, padding
	b = append(b, make([]byte, 15*8)...)
	const perList = 8
	b = le.AppendUint32(b, attestapi.QuotedPCRCount/perList)
	for l := range attestapi.QuotedPCRCount / perList {
		b = le.AppendUint32(b, perList)
		for i := range perList {
			b = le.AppendUint16(b, 32)
			d := make([]byte, 64)
			copy(d, pcrs[l*perList+i])
			b = append(b, d...)
		}
	}
	return b
}
