package release

import (
	"strings"
	"testing"
)

func TestParseMeasured(t *testing.T) {
	h := strings.Repeat("ab", 32)
	base := `{"kind":"full","hardware":"qemu-x86_64","version":"1.0.0","channel":"stable","rollout":100,"rootfs":{"sha256":"` + h + `","size":4096}`
	good := `"measured":{"bootloader_authenticode":"` + h + `","kernel_authenticode":"` + h + `","initrd_sha256":"` + h + `","cmdline":{"a":"initrd=\\plumb\\a\\initrd.img root=PARTUUID=x ro"},"pcr15":"` + h + `"}`
	for _, tc := range []struct {
		name, custom, wantErr string
	}{
		{"without measured", base + `}`, ""},
		{"with measured", base + `,` + good + `}`, ""},
		{"short kernel digest", base + `,` + strings.Replace(good, `"kernel_authenticode":"`+h, `"kernel_authenticode":"abc`, 1) + `}`, "measured.kernel_authenticode: expected 64 hex digits"},
		{"no cmdline", base + `,` + strings.Replace(good, `"cmdline":{"a":"initrd=\\plumb\\a\\initrd.img root=PARTUUID=x ro"}`, `"cmdline":{}`, 1) + `}`, "measured.cmdline: expected the command line of each slot"},
		{"cmdline of the wrong type", base + `,` + strings.Replace(good, `{"a":"initrd=\\plumb\\a\\initrd.img root=PARTUUID=x ro"}`, `"a"`, 1) + `}`, "release facts: json"},
	} {
		f, err := Parse([]byte(tc.custom))
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: Parse: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: Parse = %v, want an error containing %q", tc.name, err, tc.wantErr)
		case tc.name == "with measured" && (f.Measured == nil || f.Measured.Cmdline["a"] == ""):
			t.Errorf("%s: Measured = %+v", tc.name, f.Measured)
		}
	}
}
