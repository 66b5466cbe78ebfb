package bootrecord

// The initramfs builder/initramfs writes and plumb-init (updater/earlyinit)
// runs from agree on these paths.
const (
	// NewRoot is where the slot's root is mounted before the switch; the
	// initramfs must have this directory.
	NewRoot = "/newroot"
	// LoadOrderPath lists the modules to load: one absolute path of an
	// uncompressed .ko a line, dependencies first; blank lines and lines
	// starting with # are skipped. builder/initramfs writes it.
	LoadOrderPath = "/lib/modules/load-order"
)
