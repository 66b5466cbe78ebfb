package recipe

import (
	"strings"
	"testing"
)

func TestBootSection(t *testing.T) {
	base := "name: a\nversion: 1.0.0\nhardware: b\nkernel: {package: linux-image-amd64}\nrootfs: [{deb: busybox}]\n"
	r, err := Parse("x.yaml", []byte(base+"boot: {verity: true}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Boot.Verity || r.Boot.SecureBoot != nil {
		t.Errorf("boot = %+v, want verity and no secure boot", r.Boot)
	}
	for _, c := range []struct{ yaml, want string }{
		{"boot: {secure_boot: {key: k.pem, cert: c.pem}}\n", "x.yaml:6: boot.secure_boot: expected verity: true with it"},
		{"boot: {verity: true, secure_boot: {key: k.pem}}\n", "x.yaml:6: boot.secure_boot: expected key and cert"},
		{"boot: {verity: yes please}\n", "x.yaml:6: boot.verity:"},
		{"boot: {veritas: true}\n", `x.yaml:6: boot: unknown key "veritas"`},
	} {
		_, err := Parse("x.yaml", []byte(base+c.yaml), "")
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Parse(%q) = %v, want one line starting %q", c.yaml, err, c.want)
		}
	}
}
