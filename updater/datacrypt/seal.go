package datacrypt

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// The policy: TPM2_PolicyPCR over PCR 7 (Secure Boot state: the SecureBoot
// variable, PK, KEK, db, dbx and the db certificate that verified the boot
// chain) and PCR 15 (all zeros: plumb-init has not measured the root yet,
// so a running system, whose PCR 15 holds the root's measurement, cannot
// unseal). Under Secure Boot with the owner's keys PCR 7 is the same for
// every image the owner signed, so updates and rollbacks unseal without
// re-sealing.
var sealPCRs = []int{7, 15}

func pcrSelection(pcrs ...int) tpm2.TPMLPCRSelection {
	sel := make([]byte, 3)
	for _, p := range pcrs {
		sel[p/8] |= 1 << (p % 8)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA256, PCRSelect: sel}}}
}

// sealed is the TPM's sealed object as the token keeps it.
type sealed struct {
	Public  []byte // TPM2B_PUBLIC
	Private []byte // TPM2B_PRIVATE
	Policy  []byte // the object's authPolicy
}

// srk creates the TCG reference ECC P-256 storage key under the owner
// hierarchy: the same key on every call on the same TPM.
func srk(tpm transport.TPM) (tpm2.NamedHandle, func(), error) {
	rsp, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(tpm)
	if err != nil {
		return tpm2.NamedHandle{}, nil, fmt.Errorf("creating the storage key: %w", err)
	}
	return tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, func() {
		tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(tpm)
	}, nil
}

// seal seals secret under the current values of sealPCRs.
func seal(tpm transport.TPM, secret []byte) (*sealed, error) {
	sess, closeSess, err := tpm2.PolicySession(tpm, tpm2.TPMAlgSHA256, 16, tpm2.Trial())
	if err != nil {
		return nil, fmt.Errorf("starting a trial policy session: %w", err)
	}
	defer closeSess()
	if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: pcrSelection(sealPCRs...)}).Execute(tpm); err != nil {
		return nil, fmt.Errorf("PolicyPCR: %w", err)
	}
	pd, err := tpm2.PolicyGetDigest{PolicySession: sess.Handle()}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("PolicyGetDigest: %w", err)
	}
	parent, flush, err := srk(tpm)
	if err != nil {
		return nil, err
	}
	defer flush()
	rsp, err := tpm2.Create{
		ParentHandle: parent,
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: secret}),
		}},
		InPublic: tpm2.New2B(tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgKeyedHash,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, NoDA: true},
			AuthPolicy:       pd.PolicyDigest,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
				Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
			}),
		}),
	}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("creating the sealed object: %w", err)
	}
	return &sealed{Public: tpm2.Marshal(rsp.OutPublic), Private: tpm2.Marshal(rsp.OutPrivate), Policy: pd.PolicyDigest.Buffer}, nil
}

// unseal returns the secret if the PCRs hold the values it was sealed to.
func unseal(tpm transport.TPM, s *sealed) ([]byte, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](s.Public)
	if err != nil {
		return nil, fmt.Errorf("sealed object's public area: %w", err)
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](s.Private)
	if err != nil {
		return nil, fmt.Errorf("sealed object's private area: %w", err)
	}
	parent, flush, err := srk(tpm)
	if err != nil {
		return nil, err
	}
	defer flush()
	lr, err := tpm2.Load{ParentHandle: parent, InPrivate: *priv, InPublic: *pub}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("loading the sealed object (another TPM, or its owner hierarchy was cleared): %w", err)
	}
	defer tpm2.FlushContext{FlushHandle: lr.ObjectHandle}.Execute(tpm)
	sess, closeSess, err := tpm2.PolicySession(tpm, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		return nil, fmt.Errorf("starting a policy session: %w", err)
	}
	defer closeSess()
	if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: pcrSelection(sealPCRs...)}).Execute(tpm); err != nil {
		return nil, fmt.Errorf("PolicyPCR: %w", err)
	}
	rsp, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: lr.ObjectHandle, Name: lr.Name, Auth: sess}}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errRefused, err)
	}
	return rsp.OutData.Buffer, nil
}

// errRefused: the TPM refused to unseal (the policy did not hold).
var errRefused = errors.New("TPM2_Unseal refused")

// readPCR returns the sha256 bank's value of PCR n.
func readPCR(tpm transport.TPM, n int) ([]byte, error) {
	rsp, err := tpm2.PCRRead{PCRSelectionIn: pcrSelection(n)}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("reading PCR %d: %w", n, err)
	}
	if len(rsp.PCRValues.Digests) != 1 {
		return nil, fmt.Errorf("reading PCR %d: the TPM returned %d values", n, len(rsp.PCRValues.Digests))
	}
	return rsp.PCRValues.Digests[0].Buffer, nil
}

// mismatch explains a refused unseal from what the token recorded at
// sealing time and the PCRs and Secure Boot state now.
func mismatch(tpm transport.TPM, tok *token, secureBoot func() (bool, error)) string {
	on, sbErr := secureBoot()
	pcr7, err7 := readPCR(tpm, 7)
	pcr15, err15 := readPCR(tpm, 15)
	switch {
	case sbErr == nil && !on:
		return "Secure Boot is off (PCR 7 mismatch)"
	case err7 == nil && hex.EncodeToString(pcr7) != tok.PCR7:
		return fmt.Sprintf("the Secure Boot keys (PK, KEK, db, dbx) or the boot chain's signer changed (PCR 7 is %x, sealed to %s)", pcr7, tok.PCR7)
	case err15 == nil && !bytes.Equal(pcr15, make([]byte, 32)):
		return fmt.Sprintf("PCR 15 was extended before unsealing (%x)", pcr15)
	}
	return "the TPM refused the PCR policy (PCR 7 as sealed, PCR 15 zero)"
}
