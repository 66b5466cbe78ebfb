package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/plumb-os/plumb/format/release"
)

// ukiFile is where a Secure Boot release's UKI is downloaded before it is
// copied to the ESP (the data partition: the ESP has room for the two
// slots' boot files only).
func (a *Agent) ukiFile() string { return filepath.Join(filepath.Dir(a.StatePath), "update-uki.efi") }

// installUKI downloads the release's signed UKI for slot (TUF target
// release.UKIPath, length and sha256 checked by the fetcher) and installs
// it on the ESP with the trial entry that boots it.
func (a *Agent) installUKI(ctx context.Context, f *release.Facts, slot, partUUID string) error {
	target := release.UKIPath(f.Hardware, f.Version, slot)
	p := a.ukiFile()
	tmp, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("installing %s: %w", target, err)
	}
	defer os.Remove(p)
	defer tmp.Close()
	n, err := a.Repo.DownloadFile(ctx, target, tmp, 0, nil)
	if err != nil {
		return fmt.Errorf("installing %s: %w", target, err)
	}
	if _, err := tmp.Seek(0, 0); err != nil {
		return err
	}
	a.log().Info("UKI downloaded and verified", "target", target, "bytes", n)
	return a.Device.InstallUKI(ctx, tmp, f, partUUID)
}
