package plumb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/testvm"
)

type vmRunOptions struct {
	image    string
	dir      string
	tpm      bool
	secure   bool
	inPlace  bool
	until    string
	timeout  time.Duration
	forwards []string
	memory   int
}

func newVMCmd(e *cli.Env) *cobra.Command {
	vm := &cobra.Command{Use: "vm", Short: "Boot images in QEMU (OVMF, swtpm) for trying and testing"}
	var o vmRunOptions
	run := &cobra.Command{
		Use:   "run IMAGE",
		Short: "Boot a disk image under OVMF with a TPM, console on stdout",
		Long: `Run boots IMAGE in QEMU (TCG) under OVMF with swtpm and prints the serial
console. The VM boots a copy of IMAGE kept in --dir (unless --in-place), so
the built image stays as it was; the copy, OVMF's variables and the TPM's
state persist in --dir between runs, like a real machine's disk, NVRAM and TPM.
With --until it stops when a console line matches the pattern and exits 0;
otherwise it runs until the guest powers off or Ctrl-C.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.image = args[0]
			return runVM(cmd.Context(), e, o)
		},
	}
	f := run.Flags()
	f.StringVar(&o.dir, "dir", "", "VM directory (disk copy, OVMF vars, TPM state, console log); default IMAGE's dir/vm")
	f.BoolVar(&o.tpm, "tpm", true, "attach a TPM 2.0 (swtpm)")
	f.BoolVar(&o.secure, "secure-boot", false, "OVMF's Secure Boot build with Debian's snakeoil keys enrolled (boots images signed with /usr/share/ovmf/PkKek-1-snakeoil.key); use a fresh --dir")
	f.BoolVar(&o.inPlace, "in-place", false, "boot IMAGE itself, not a copy")
	f.StringVar(&o.until, "until", "", "stop when a console line matches this regular expression")
	f.DurationVar(&o.timeout, "timeout", 0, "give up after this long (0: no limit)")
	f.StringArrayVar(&o.forwards, "forward", nil, "GUEST_PORT:HOST_PORT: the guest's 10.0.2.100:GUEST_PORT reaches 127.0.0.1:HOST_PORT (repeatable)")
	f.IntVar(&o.memory, "memory", 512, "guest memory in MiB")
	vm.AddCommand(run)
	vm.AddCommand(&cobra.Command{
		Use:   "tpm-ca",
		Short: "Print the CA certificates that sign the VM TPMs' EK certificates",
		Long: `tpm-ca prints the PEM files, one a line, of the CA (swtpm-localca's root and
issuer) that signs the EK certificate of every TPM plumb vm run attaches. Give
them to plumb serve --ek-ca, and a VM's attestation checks its EK certificate
as a real device's is checked against its TPM manufacturer. swtpm-localca
makes them with its first certificate: if they are missing, tpm-ca makes a
scratch TPM to have them made.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			certs, err := testvm.TPMCACerts(cmd.Context())
			if err != nil {
				return err
			}
			for _, c := range certs {
				fmt.Fprintln(e.Stdout, c)
			}
			return nil
		},
	})
	return vm
}

func runVM(ctx context.Context, e *cli.Env, o vmRunOptions) error {
	var until *regexp.Regexp
	if o.until != "" {
		var err error
		if until, err = regexp.Compile(o.until); err != nil {
			return cli.BadInput(fmt.Errorf("--until: expected a regular expression: %w", err))
		}
	}
	if _, err := os.Stat(o.image); err != nil {
		return cli.BadInput(fmt.Errorf("image: %w", err))
	}
	if o.dir == "" {
		o.dir = filepath.Join(filepath.Dir(o.image), "vm")
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	disk := o.image
	if !o.inPlace {
		disk = filepath.Join(o.dir, "disk.img")
		if _, err := os.Stat(disk); err != nil {
			if err := testvm.CopyImage(disk, o.image); err != nil {
				return err
			}
		}
	}
	opts := []testvm.Option{testvm.WithDisk(disk), testvm.WithMemory(o.memory), testvm.WithConsoleOutput(e.Stdout), testvm.WithLogger(e.Log)}
	if o.secure {
		opts = append(opts, testvm.WithSecureBoot())
	}
	if o.tpm {
		opts = append(opts, testvm.WithTPM())
	}
	for _, fw := range o.forwards {
		g, h, ok := strings.Cut(fw, ":")
		gp, err1 := strconv.Atoi(g)
		hp, err2 := strconv.Atoi(h)
		if !ok || err1 != nil || err2 != nil {
			return cli.BadInput(fmt.Errorf("--forward: expected GUEST_PORT:HOST_PORT like 443:8443, got %q", fw))
		}
		opts = append(opts, testvm.WithGuestForward(gp, hp))
	}
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	vm, err := testvm.Start(ctx, o.dir, opts...)
	if err != nil {
		return err
	}
	defer vm.Close()
	if until == nil {
		return vm.Wait()
	}
	if _, err := vm.WaitFor(ctx, until); err != nil {
		return err
	}
	fmt.Fprintf(e.Stderr, "plumb vm: %q seen after %.1fs\n", o.until, time.Since(vm.Started()).Seconds())
	return nil
}
