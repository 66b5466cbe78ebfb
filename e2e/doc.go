// Package e2e holds the end-to-end tests: they build the demo recipe with
// the real builder, check the images with the real tools (sgdisk, fsck.vfat,
// unsquashfs, fsck.ext4) and boot them in QEMU under OVMF with swtpm. They
// are skipped under -short.
package e2e
