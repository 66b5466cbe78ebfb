package testvm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// Option configures Start.
type Option func(*options) error

type options struct {
	disks      []string
	kernel     string
	initrd     string
	cmdline    string
	uefi       bool
	secureBoot bool
	tpm        bool
	forwards   []forward
	memoryMiB  int
	noReboot   bool
	log        *slog.Logger
	consoleOut io.Writer
	consoleIn  io.Reader
}

type forward struct {
	guestPort, hostPort int
}

func defaultOptions() options {
	return options{uefi: true, memoryMiB: 512}
}

// WithDisk attaches the raw image at path as a virtio-blk disk. It
// appends: give it once per disk, in order; the first disk is the first
// boot device. Each disk sits at a fixed PCI slot (0x10 + index) with a
// fixed bootindex, so a NIC added later does not move it and a kept
// OVMF vars file still finds it.
func WithDisk(path string) Option {
	return func(o *options) error {
		if path == "" {
			return errors.New("disk: expected a path to a raw image, got an empty string")
		}
		o.disks = append(o.disks, path)
		return nil
	}
}

// WithKernel boots kernel directly (-kernel, -initrd, -append). initrd
// may be empty. Without WithoutUEFI the kernel is still started by OVMF
// (it is an EFI application, measured into the TPM). It replaces an
// earlier WithKernel.
func WithKernel(kernel, initrd, cmdline string) Option {
	return func(o *options) error {
		if kernel == "" {
			return errors.New("kernel: expected a path to a kernel image, got an empty string")
		}
		o.kernel, o.initrd, o.cmdline = kernel, initrd, cmdline
		return nil
	}
}

// WithoutUEFI boots with QEMU's default BIOS instead of OVMF. Only
// useful with WithKernel.
func WithoutUEFI() Option {
	return func(o *options) error {
		o.uefi = false
		return nil
	}
}

// WithTPM gives the VM a TPM 2.0 (tpm-tis) backed by swtpm. Its state
// lives in dir/tpm: manufactured (EK and platform certificates) by
// swtpm_setup on first use, then kept, so a later Start with the same
// dir is a reboot of the same machine.
func WithTPM() Option {
	return func(o *options) error {
		o.tpm = true
		return nil
	}
}

// WithGuestForward lets the guest reach the host's 127.0.0.1:hostPort
// as 10.0.2.100:guestPort (one busybox nc per connection). It implies
// a virtio-net NIC on QEMU user networking with restrict=on: the guest
// reaches nothing else. It appends: give it once per port.
func WithGuestForward(guestPort, hostPort int) Option {
	return func(o *options) error {
		if guestPort < 1 || guestPort > 65535 {
			return fmt.Errorf("guest forward: guest port: expected 1..65535, got %d", guestPort)
		}
		if hostPort < 1 || hostPort > 65535 {
			return fmt.Errorf("guest forward: host port: expected 1..65535, got %d", hostPort)
		}
		for _, f := range o.forwards {
			if f.guestPort == guestPort {
				return fmt.Errorf("guest forward: guest port %d given twice", guestPort)
			}
		}
		o.forwards = append(o.forwards, forward{guestPort, hostPort})
		return nil
	}
}

// WithMemory sets the guest's memory in MiB (default 512). It replaces.
func WithMemory(mib int) Option {
	return func(o *options) error {
		if mib < 64 {
			return fmt.Errorf("memory: expected at least 64 MiB, got %d", mib)
		}
		o.memoryMiB = mib
		return nil
	}
}

// WithNoReboot makes QEMU exit when the guest reboots (-no-reboot).
// Without it a guest reboot restarts the machine inside the same QEMU
// process, keeping the TPM, which is what A/B update tests want.
func WithNoReboot() Option {
	return func(o *options) error {
		o.noReboot = true
		return nil
	}
}

// WithLogger logs process starts and ends to log. nil discards.
func WithLogger(log *slog.Logger) Option {
	return func(o *options) error {
		o.log = log
		return nil
	}
}

// WithConsoleOutput also copies the serial console, as it comes, to w
// (os.Stdout for `plumb vm run`). It replaces. A slow w slows the
// console reader; a failing w is dropped after its first error.
func WithConsoleOutput(w io.Writer) Option {
	return func(o *options) error {
		o.consoleOut = w
		return nil
	}
}

// WithConsoleInput feeds r to the guest's serial console (default:
// nothing) through a pipe, as the bytes are read. QEMU never sees a
// terminal: for keystroke-at-a-time input (`plumb vm run` on a tty) the
// caller puts its terminal in raw mode (golang.org/x/term) and restores
// it. A goroutine reading r may outlive the VM until r yields or is
// closed. It replaces.
func WithConsoleInput(r io.Reader) Option {
	return func(o *options) error {
		o.consoleIn = r
		return nil
	}
}
