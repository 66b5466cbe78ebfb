// Package attest owns TPM attestation for Plumb devices: the device side
// that produces evidence, the verifier that checks it, and the reports a
// security team reads. The evidence format is specified in EVIDENCE.md.
//
// Device side (plumbd), in call order:
//
//	rw, _ := attest.OpenTPM()               // /dev/tpmrm0, else /dev/tpm0
//	d, _ := attest.NewDevice(rw, stateDir)  // EK and AK, both primaries under the endorsement hierarchy
//	req, _ := d.EnrollmentRequest()         // EK public + certificate, AK public: sent to the verifier
//	secret, _ := d.ActivateCredential(credBlob, encSecret) // answer the verifier's challenge
//	ev, _ := d.Evidence(ctx, nonce, release)               // quote over PCRs 0-15 + logs
//	d.Close()
//
// Verifier side (plumb attest verify, plumb serve):
//
//	v := attest.NewVerifier(attest.VerifierOptions{ManufacturerCAs: pool, Enrolled: store})
//	ch, _ := v.Challenge(device, ekPub, ekCert, akPub) // credential activation challenge
//	en, _ := v.ConfirmBinding(ch, secret)              // AK bound to EK: store en
//	rep := v.Verify(ev, nonce, refs)                   // one Check per property; rep.Verdict
//
// A Device is not safe for concurrent use (one TPM session at a time). A
// Verifier is safe for concurrent use if its store is.
package attest
