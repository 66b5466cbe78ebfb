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

// TestDataEncryption: partitions.data_encryption takes "luks2-tpm" with
// verity (the build then needs a Secure Boot key), and anything else is
// one error line.
func TestDataEncryption(t *testing.T) {
	base := "name: a\nversion: 1.0.0\nhardware: b\nkernel: {package: linux-image-amd64}\nrootfs: [{deb: busybox}]\n"
	sb := "boot: {verity: true, secure_boot: {key: k.pem, cert: c.pem}}\n"
	r, err := Parse("x.yaml", []byte(base+sb+"partitions: {data: 64MiB, data_encryption: luks2-tpm}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Partitions.DataEncryption != DataSealed {
		t.Errorf("data_encryption = %q", r.Partitions.DataEncryption)
	}
	for _, c := range []struct{ yaml, want string }{
		{"partitions: {data_encryption: luks2-tpm}\n", `x.yaml:6: partitions.data_encryption: "luks2-tpm" seals /data to a signed boot chain: expected boot.verity: true`},
		{sb + "partitions: {data_encryption: luks1}\n", `x.yaml:7: partitions.data_encryption: expected "luks2-tpm"`},
	} {
		_, err := Parse("x.yaml", []byte(base+c.yaml), "")
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Parse(%q) = %v, want one line starting %q", c.yaml, err, c.want)
		}
	}
}
