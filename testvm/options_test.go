package testvm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestQEMUArgs(t *testing.T) {
	base := []string{
		"-machine", "q35", "-accel", "tcg", "-smp", "1", "-m", "512",
		"-display", "none", "-no-user-config", "-nodefaults",
		"-chardev", "stdio,id=con0,signal=off", "-serial", "chardev:con0",
	}
	tests := []struct {
		name string
		opts []Option
		p    paths
		want []string // after base
	}{
		{
			name: "bios kernel",
			opts: []Option{WithoutUEFI(), WithKernel("k", "", "console=ttyS0 panic=-1"), WithNoReboot()},
			p:    paths{kernel: "/k"},
			want: []string{"-kernel", "/k", "-append", "console=ttyS0 panic=-1", "-no-reboot"},
		},
		{
			name: "uefi two disks tpm",
			opts: []Option{WithDisk("a"), WithDisk("b"), WithTPM(), WithMemory(1024)},
			p:    paths{ovmfCode: "/code.fd", ovmfVars: "/vm,1/OVMF_VARS.fd", disks: []string{"/a.img", "/b.img"}, tpmSock: "/vm/tpm/sock"},
			want: []string{
				"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/code.fd",
				"-drive", "if=pflash,format=raw,unit=1,file=/vm,,1/OVMF_VARS.fd",
				"-drive", "if=none,id=disk0,format=raw,file=/a.img",
				"-device", "virtio-blk-pci,drive=disk0,addr=0x10,bootindex=0",
				"-drive", "if=none,id=disk1,format=raw,file=/b.img",
				"-device", "virtio-blk-pci,drive=disk1,addr=0x11,bootindex=1",
				"-chardev", "socket,id=chrtpm,path=/vm/tpm/sock",
				"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
				"-device", "tpm-tis,tpmdev=tpm0",
			},
		},
		{
			name: "guest forwards",
			opts: []Option{WithoutUEFI(), WithGuestForward(443, 8443), WithGuestForward(80, 8080)},
			p:    paths{nc: "/vm/nc"},
			want: []string{
				"-netdev", "user,id=n0,restrict=on" +
					",guestfwd=tcp:10.0.2.100:443-cmd:/vm/nc 127.0.0.1 8443" +
					",guestfwd=tcp:10.0.2.100:80-cmd:/vm/nc 127.0.0.1 8080",
				"-device", "virtio-net-pci,netdev=n0,romfile=,addr=0x8",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := defaultOptions()
			for _, opt := range tt.opts {
				if err := opt(&o); err != nil {
					t.Fatal(err)
				}
			}
			got := qemuArgs(&o, &tt.p)
			want := append(append([]string(nil), base...), tt.want...)
			if o.memoryMiB != 512 {
				want[7] = "1024"
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("qemuArgs() =\n%q\nwant\n%q", got, want)
			}
		})
	}
}

func TestOptionErrors(t *testing.T) {
	tests := []struct {
		opt  Option
		want string
	}{
		{WithDisk(""), "disk: expected a path to a raw image, got an empty string"},
		{WithKernel("", "", ""), "kernel: expected a path to a kernel image, got an empty string"},
		{WithGuestForward(0, 80), "guest forward: guest port: expected 1..65535, got 0"},
		{WithGuestForward(80, 70000), "guest forward: host port: expected 1..65535, got 70000"},
		{WithMemory(16), "memory: expected at least 64 MiB, got 16"},
	}
	for _, tt := range tests {
		o := defaultOptions()
		err := tt.opt(&o)
		if err == nil || err.Error() != tt.want {
			t.Errorf("option error = %v, want %q", err, tt.want)
		}
	}
	o := defaultOptions()
	WithGuestForward(443, 1)(&o)
	if err := WithGuestForward(443, 2)(&o); err == nil || err.Error() != "guest forward: guest port 443 given twice" {
		t.Errorf("second forward of port 443 = %v, want an error", err)
	}
}

// TestStartBadInput checks that bad input fails before any process
// starts, with one line naming it.
func TestStartBadInput(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		opts []Option
		want string
	}{
		{"missing disk", []Option{WithDisk(filepath.Join(dir, "nope.img"))}, "disk 0: stat " + filepath.Join(dir, "nope.img") + ": no such file or directory"},
		{"disk is a dir", []Option{WithDisk(dir)}, "disk 0: " + dir + ": expected a file, got a directory"},
		{"missing kernel", []Option{WithKernel(filepath.Join(dir, "vmlinuz"), "", "")}, "kernel: stat " + filepath.Join(dir, "vmlinuz") + ": no such file or directory"},
		{"bad memory", []Option{WithMemory(1)}, "memory: expected at least 64 MiB, got 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Start(t.Context(), filepath.Join(dir, "vm"), tt.opts...)
			if err == nil {
				v.Close()
				t.Fatal("Start succeeded, want an error")
			}
			if err.Error() != tt.want {
				t.Errorf("Start error = %q, want %q", err, tt.want)
			}
		})
	}
}

func TestToolHint(t *testing.T) {
	_, err := tool{name: "qemu-system-nonesuch", hint: "run make deps (apt-get install qemu-system-x86)"}.find()
	if err == nil || err.Error() != "qemu-system-nonesuch not found: run make deps (apt-get install qemu-system-x86)" {
		t.Errorf("find() = %v, want the install hint", err)
	}
	_, err = tool{name: "/nonexistent/OVMF_CODE_4M.fd", file: true, hint: "run make deps (apt-get install ovmf)"}.find()
	if err == nil || err.Error() != "/nonexistent/OVMF_CODE_4M.fd not found: run make deps (apt-get install ovmf)" {
		t.Errorf("find() = %v, want the install hint", err)
	}
}

func TestMachineVarsKept(t *testing.T) {
	if _, err := os.Stat(ovmfVars); err != nil {
		if testing.Short() {
			t.Skip("ovmf not installed")
		}
		t.Fatalf("%s not found: run make deps (apt-get install ovmf)", ovmfVars)
	}
	dir := t.TempDir()
	p, err := machineVars(dir, toolOVMFVars)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("boot entries"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := machineVars(dir, toolOVMFVars); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "boot entries" {
		t.Errorf("second machineVars replaced the machine's vars file")
	}
}
