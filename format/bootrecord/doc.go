// Package bootrecord owns what plumb-init records about a boot for the
// agent and the verifier: boot.json (BootInfo, spec in bootinfo.md), the
// PCR 15 measurement log (Measurement, MEASUREMENTS.md), and the paths of
// the initramfs that plumb-init and builder/initramfs agree on.
//
// plumb-init writes both files; plumbd reads boot.json; attest sends the
// log as evidence and the verifier replays it against the quoted PCR 15.
package bootrecord
