// Package format is the contracts layer: every file, name and wire message
// that one side of Plumb writes and another side reads lives in a package
// under format/, and nowhere else. The builder, the server, the device
// agent (updater) and attest import these packages; none of them imports
// another side to learn a format.
//
// One package per contract, each with its spec in markdown beside it:
//
//	format/release     release facts (TUF custom), versions, choosing a release, rollout membership
//	format/bootentry   boot entries (name with tries, content), ESP paths, loader.conf
//	format/disklayout  partitions, their names and UUIDs
//	format/config      agent.json and installer.json
//	format/bootrecord  boot.json and the PCR 15 measurement log plumb-init keeps
//	format/workload    the workload manifest (workloads.json)
//	format/attestapi   the attestation wire API: evidence, enrolment, reports
//	format/deviceapi   the device id, status report body and join token header (fleet service)
//	format/delta       the delta bundle and its decoder (the encoder is builder/delta)
//	format/blockcodec  the squashfs block codec (zstd frames as images hold them)
//	format/lz4legacy   LZ4 legacy streams (a bzImage's kernel payload), as the delta decoder re-compresses them
//
// Packages here import only the standard library and each other, and
// internal/ helpers that themselves import only the standard library
// (internal/ctxio, internal/iox, internal/jsonkeep), with one named
// exception: format/blockcodec and
// format/delta link zstd
// (github.com/DataDog/zstd through cgo, or github.com/klauspost/compress
// in pure Go). A delta decoder must re-compress blocks to the very bytes
// the builder wrote, so the codec is part of the format; writing it again
// here would be a second zstd. For the same reason format/lz4legacy links
// liblz4 through cgo (a C library, no Go module: see its package doc).
// The layering test (format_test.go) holds these rules.
//
// A change to a format here is a change to what devices in the field read:
// readers keep fields they do not know, and each format has golden files
// and the previous release's fixtures in its testdata/.
package format
