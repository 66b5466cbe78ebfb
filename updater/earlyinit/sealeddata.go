package earlyinit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/updater/datacrypt"
)

// DataName is the device mapper name of the unlocked data partition.
const DataName = "plumb-data"

// efivars is where plumb-init mounts efivarfs to read SecureBoot.
const (
	efivars       = "/sys/firmware/efi/efivars"
	secureBootVar = efivars + "/" + datacrypt.SecureBootVar
)

// openSealedData unlocks the encrypted data partition dev with the key
// sealed in the TPM (creating the volume on the first boot) and maps it
// through the crypt target; it returns the node to mount. It runs before
// PCR 15 is extended: the seal requires PCR 15 at zero.
func openSealedData(ctx context.Context, dev string, log *slog.Logger) (string, error) {
	start := time.Now()
	f, err := openTPM(tpmDevices)
	if err != nil {
		return "", &datacrypt.SealedError{Reason: err.Error()}
	}
	defer f.Close()
	u, err := datacrypt.Unlock(ctx, dev, transport.FromReadWriter(f), readSecureBoot)
	if err != nil {
		return "", err
	}
	defer clear(u.VolumeKey)
	if u.RecoveryKey != "" {
		log.Warn("data partition encrypted and sealed to this TPM: its recovery key (LUKS2 keyslot 0) is shown this once; write it down",
			"device", dev, "recovery_key", u.RecoveryKey, "ms", time.Since(start).Milliseconds())
	}
	unlocked := time.Since(start) // unseal and check the key (first boot: create the volume)
	args := fmt.Sprintf("%s %x 0 %s %d", u.Cipher, u.VolumeKey, dev, u.Offset/512)
	node, err := dmMap(DataName, 0, u.Sectors, "crypt", args)
	if err != nil {
		return "", fmt.Errorf("dm-crypt: %w (are dm_crypt and xts in the initramfs?)", err)
	}
	log.Info("data partition unlocked", "device", node, "pcr7", fmt.Sprintf("%x", u.PCR7), "unlock_ms", unlocked.Milliseconds(), "ms", time.Since(start).Milliseconds())
	return node, nil
}

// readSecureBoot reads the firmware's SecureBoot variable through efivarfs
// (loaded from the initramfs's modules), mounting it if needed; firmware
// without the variable has Secure Boot off.
func readSecureBoot() (bool, error) {
	if _, err := os.Stat(secureBootVar); errors.Is(err, os.ErrNotExist) {
		if merr := unix.Mount("efivarfs", efivars, "efivarfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RDONLY, ""); merr != nil && !errors.Is(merr, unix.EBUSY) {
			return false, fmt.Errorf("mounting efivarfs: %w", merr)
		}
	}
	return datacrypt.SecureBootFromEFIVars(efivars)
}
