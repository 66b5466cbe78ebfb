// Package layering holds the import rules of the repository as a test
// (layering_test.go); it has no code. The rules:
//
//   - format/ (the contracts layer) imports only the standard library and
//     itself; format/format_test.go checks that in detail.
//   - builder/ never imports updater/, attest or server.
//   - updater/ never imports builder/, server, attest or testvm.
//   - attest never imports builder/, updater/ or server.
//   - server never imports updater/. It may import the build-side packages
//     that publish (builder/...) and attest, whose verifier it runs.
//   - internal/cli/plumb and internal/cli/plumbd never import each other.
//   - plumbd (cmd/plumbd) links no builder/, server or testvm package and
//     none of the builder-only modules: the Debian package reader, the cpio
//     writer, the progress bars, the YAML parser.
//   - plumb-init (cmd/plumb-init) links only the standard library, the
//     early init, the formats it writes, golang.org/x/sys and go-diskfs's
//     GPT reader.
package layering
