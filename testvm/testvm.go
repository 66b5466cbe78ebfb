// Package testvm runs QEMU virtual machines for end-to-end tests and for
// `plumb vm run`: q35 under TCG, OVMF firmware, an optional swtpm TPM 2.0,
// virtio disks and a restricted user-mode network whose only way out is
// to chosen ports on the host's 127.0.0.1.
//
// Start boots a VM whose files live in a private directory: the OVMF
// vars copy (OVMF_VARS.fd, kept across Starts like a real machine's
// NVRAM), the TPM state (tpm/), the serial console (console.log,
// appended by each Start) and QEMU's own messages (qemu.log, rewritten
// by each Start). Start again with the same directory to power the same
// machine on again.
//
// OVMF remembers boot entries by PCI slot, and adding a device can move
// an unpinned disk so that a kept vars file no longer finds it (OVMF then
// hangs in its shell). So disk i always sits at PCI slot 0x10+i with
// bootindex i, and the NIC at slot 0x8. Changing the disks of a kept
// machine is still a different machine: give it a fresh directory.
//
// Tests follow the serial console with WaitFor, or with Mark and
// WaitForAfter to wait for a line that comes after a known point (a
// second boot's banner). Wait waits for QEMU to exit; Kill cuts the
// power; Close shuts QEMU down. Every process (QEMU, swtpm, the busybox
// nc that QEMU starts per forwarded connection) is ended by PID when the
// VM ends, and the VM is killed when Start's context ends (with
// t.Context(), that is before the test's Cleanup calls Close).
//
// A VM's methods are safe for concurrent use.
package testvm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// closeTimeout is how long Close waits for QEMU to shut down after
// SIGTERM before it kills it.
const closeTimeout = 10 * time.Second

// VM is one running QEMU process and its swtpm.
type VM struct {
	dir     string
	log     *slog.Logger
	cmd     *exec.Cmd
	tpm     *swtpm // nil without WithTPM
	con     *console
	started time.Time

	nc string // dir/nc, argv[0] of the guest forward helpers; "" without

	exited  chan struct{} // QEMU reaped; exitErr set
	exitErr error
	done    chan struct{} // QEMU reaped and swtpm ended; tpmErr set
	tpmErr  error

	stopCtx   func() bool
	closeOnce sync.Once
	closeErr  error
}

// Start boots a VM. dir is its private working directory (created if
// needed); see the package doc for what it holds. The VM is killed when
// ctx ends; call Close when done with it.
func Start(ctx context.Context, dir string, opts ...Option) (*VM, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("starting vm: %w", err)
	}
	log := o.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("vm dir: %w", err)
	}

	var p paths
	for i, d := range o.disks {
		if p.disks, err = appendFile(p.disks, d); err != nil {
			return nil, fmt.Errorf("disk %d: %w", i, err)
		}
	}
	if o.kernel != "" {
		if p.kernel, err = existingFile(o.kernel); err != nil {
			return nil, fmt.Errorf("kernel: %w", err)
		}
		if o.initrd != "" {
			if p.initrd, err = existingFile(o.initrd); err != nil {
				return nil, fmt.Errorf("initrd: %w", err)
			}
		}
	}
	qemu, err := toolQEMU.find()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating vm dir: %w", err)
	}
	if o.uefi {
		code, vars := toolOVMFCode, toolOVMFVars
		if o.secureBoot {
			code, vars = toolOVMFCodeSecure, toolOVMFVarsSecure
		}
		if p.ovmfCode, err = code.find(); err != nil {
			return nil, err
		}
		if p.ovmfVars, err = machineVars(dir, vars); err != nil {
			return nil, err
		}
	}
	if len(o.forwards) > 0 {
		if p.nc, err = forwardHelper(dir); err != nil {
			return nil, err
		}
	}

	v := &VM{
		dir:    dir,
		log:    log,
		con:    newConsole(maxConsole),
		nc:     p.nc,
		exited: make(chan struct{}),
		done:   make(chan struct{}),
	}
	if o.tpm {
		if v.tpm, err = startTPM(ctx, filepath.Join(dir, "tpm"), log); err != nil {
			return nil, err
		}
		p.tpmSock = v.tpm.sock
	}
	if err := v.startQEMU(ctx, qemu, qemuArgs(&o, &p), &o); err != nil {
		if v.tpm != nil {
			err = errors.Join(err, v.tpm.stop())
		}
		return nil, err
	}
	return v, nil
}

// startQEMU starts QEMU in its own process group (a terminal's Ctrl-C
// goes to the caller, which ends the VM through its context), with the
// serial console on a pipe that a goroutine reads.
func (v *VM) startQEMU(ctx context.Context, qemu string, args []string, o *options) error {
	logFile, err := os.OpenFile(filepath.Join(v.dir, "console.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening console log: %w", err)
	}
	stderr, err := os.Create(filepath.Join(v.dir, "qemu.log"))
	if err != nil {
		logFile.Close()
		return fmt.Errorf("creating qemu log: %w", err)
	}
	defer stderr.Close() // QEMU holds its own descriptor
	r, w, err := os.Pipe()
	if err != nil {
		logFile.Close()
		return fmt.Errorf("creating console pipe: %w", err)
	}

	cmd := exec.Command(qemu, args...)
	var inW *os.File
	if o.consoleIn != nil {
		// Our own pipe, not exec's: QEMU then neither reads a terminal
		// from its own process group (SIGTTIN) nor makes it raw, and
		// reaping QEMU never waits for the caller's reader.
		inR, w, err := os.Pipe()
		if err != nil {
			r.Close()
			w.Close()
			logFile.Close()
			return fmt.Errorf("creating console input pipe: %w", err)
		}
		defer inR.Close() // QEMU holds its own descriptor
		cmd.Stdin, inW = inR, w
	}
	cmd.Stdout = w
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	v.cmd = cmd
	v.started = time.Now()
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		logFile.Close()
		if inW != nil {
			inW.Close()
		}
		return fmt.Errorf("starting qemu: %w", err)
	}
	if inW != nil {
		go v.feedConsole(inW, o.consoleIn)
	}
	v.log.Info("qemu started", "pid", cmd.Process.Pid, "dir", v.dir, "args", strings.Join(args, " "))
	v.stopCtx = context.AfterFunc(ctx, func() {
		v.log.Info("context ended, killing vm", "cause", context.Cause(ctx))
		v.Kill()
	})
	go v.readConsole(r, logFile, o.consoleOut)
	go v.reap()
	return nil
}

// readConsole copies the serial console into memory, the console log
// and the caller's writer until QEMU and everything holding the pipe
// are gone.
func (v *VM) readConsole(r, logFile *os.File, out io.Writer) {
	defer r.Close()
	defer v.con.close()
	defer logFile.Close()
	buf := make([]byte, 32<<10)
	logOK := true
	for {
		n, err := r.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			v.con.Write(chunk)
			if logOK {
				if _, werr := logFile.Write(chunk); werr != nil {
					v.log.Warn("console log write failed, no longer writing it", "err", werr)
					logOK = false
				}
			}
			if out != nil {
				if _, werr := out.Write(chunk); werr != nil {
					v.log.Warn("console output write failed, no longer copying", "err", werr)
					out = nil
				}
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				v.log.Warn("reading console failed", "err", err)
			}
			return
		}
	}
}

// feedConsole copies the caller's input to QEMU until either side ends.
// The write end is closed when QEMU exits, so a copy blocked in a write
// ends then; one blocked in in.Read ends at the next input or close.
func (v *VM) feedConsole(w *os.File, in io.Reader) {
	defer w.Close()
	go func() {
		<-v.exited
		w.Close() // *os.File: safe concurrently with Write
	}()
	if _, err := io.Copy(w, in); err != nil && !errors.Is(err, os.ErrClosed) && !errors.Is(err, syscall.EPIPE) {
		v.log.Warn("copying console input failed", "err", err)
	}
}

// reap waits for QEMU to exit, then ends the guest forward helpers it
// left and swtpm.
func (v *VM) reap() {
	v.exitErr = v.cmd.Wait()
	v.log.Info("qemu exited", "pid", v.cmd.Process.Pid, "status", v.cmd.ProcessState.String(),
		"seconds", time.Since(v.started).Seconds())
	close(v.exited)
	if v.stopCtx != nil {
		v.stopCtx()
	}
	if v.nc != "" {
		killHelpers(v.nc, v.log)
	}
	if v.tpm != nil {
		v.tpmErr = v.tpm.stop()
	}
	close(v.done)
}

// signal sends sig to QEMU. Process.Signal uses a pidfd: it never
// reaches another process that got QEMU's PID after its exit.
func (v *VM) signal(sig syscall.Signal) {
	_ = v.cmd.Process.Signal(sig)
}

// exitCause describes how QEMU ended, with the end of its own messages,
// for errors. It waits for QEMU to be reaped.
func (v *VM) exitCause() error {
	<-v.exited
	msg := "exited"
	if v.exitErr != nil {
		msg = v.exitErr.Error()
	}
	err := fmt.Errorf("qemu %s", msg)
	if s := tailFile(filepath.Join(v.dir, "qemu.log"), 2048); s != "" {
		err = fmt.Errorf("%w (qemu.log: %s)", err, s)
	}
	return fmt.Errorf("%w before a match", err)
}

// Mark returns the current end of the console, for WaitForAfter. A line
// being written when Mark is called counts as after the mark.
func (v *VM) Mark() Mark { return v.con.mark() }

// WaitFor waits for a console line, from the start of the console, that
// matches pattern, and returns its submatches. Lines are matched whole
// (without the line end), once complete. It fails if QEMU exits first
// or ctx ends; the error quotes the last console lines.
func (v *VM) WaitFor(ctx context.Context, pattern *regexp.Regexp) ([]string, error) {
	return v.WaitForAfter(ctx, 0, pattern)
}

// WaitForAfter is WaitFor counting only lines completed after m.
func (v *VM) WaitForAfter(ctx context.Context, m Mark, pattern *regexp.Regexp) ([]string, error) {
	return v.con.wait(ctx, m, pattern, v.exitCause)
}

// Console returns the console output so far (at most the last 8 MiB;
// dir/console.log has it all).
func (v *VM) Console() string { return v.con.String() }

// Started returns when QEMU was started.
func (v *VM) Started() time.Time { return v.started }

// Dir returns the VM's working directory.
func (v *VM) Dir() string { return v.dir }

// Wait waits for QEMU to exit and swtpm to end, and returns QEMU's exit
// status: nil after a guest poweroff (or a reboot with WithNoReboot),
// an *exec.ExitError after a Kill.
func (v *VM) Wait() error {
	<-v.done
	return v.exitErr
}

// Kill cuts the power: SIGKILL to QEMU and its helpers, without
// warning, then swtpm is ended. It returns once all are gone.
func (v *VM) Kill() error {
	v.signal(syscall.SIGKILL)
	<-v.done
	return v.tpmErr
}

// Close shuts QEMU down (SIGTERM, then SIGKILL after 10 s) and ends
// swtpm, all by PID. It removes nothing from the VM's directory. It may
// be called more than once, and after Kill or Wait.
func (v *VM) Close() error {
	v.closeOnce.Do(func() {
		v.signal(syscall.SIGTERM)
		select {
		case <-v.exited:
		case <-time.After(closeTimeout):
			v.log.Warn("qemu ignored SIGTERM, killing it", "pid", v.cmd.Process.Pid)
			v.signal(syscall.SIGKILL)
		}
		<-v.done
		v.closeErr = v.tpmErr
	})
	return v.closeErr
}

// pids returns the PIDs of QEMU and swtpm (0 without a TPM), for tests.
func (v *VM) pids() (qemu, tpm int) {
	if v.tpm != nil {
		tpm = v.tpm.cmd.Process.Pid
	}
	return v.cmd.Process.Pid, tpm
}

// paths are the resolved files a QEMU command line names.
type paths struct {
	disks    []string
	kernel   string
	initrd   string
	ovmfCode string
	ovmfVars string
	tpmSock  string
	nc       string
}

// qemuArgs builds QEMU's command line. Disks and the NIC sit at fixed
// PCI slots so that a kept OVMF vars file keeps finding its boot disk.
func qemuArgs(o *options, p *paths) []string {
	machine := "q35"
	if o.secureBoot {
		machine = "q35,smm=on" // the secboot build keeps its vars in SMM
	}
	args := []string{
		"-machine", machine, "-accel", "tcg", "-smp", "1",
		"-m", strconv.Itoa(o.memoryMiB),
		"-display", "none", "-no-user-config", "-nodefaults",
		"-chardev", "stdio,id=con0,signal=off", "-serial", "chardev:con0",
	}
	if o.secureBoot {
		args = append(args, "-global", "driver=cfi.pflash01,property=secure,value=on")
	}
	if p.ovmfCode != "" {
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+qemuEscape(p.ovmfCode),
			"-drive", "if=pflash,format=raw,unit=1,file="+qemuEscape(p.ovmfVars))
	}
	if p.kernel != "" {
		args = append(args, "-kernel", p.kernel)
		if p.initrd != "" {
			args = append(args, "-initrd", p.initrd)
		}
		if o.cmdline != "" {
			args = append(args, "-append", o.cmdline)
		}
	}
	// A direct kernel takes boot index 0 (QEMU refuses two), the disks
	// follow it.
	first := 0
	if p.kernel != "" {
		first = 1
	}
	for i, d := range p.disks {
		args = append(args,
			"-drive", fmt.Sprintf("if=none,id=disk%d,format=raw,file=%s", i, qemuEscape(d)),
			"-device", fmt.Sprintf("virtio-blk-pci,drive=disk%d,addr=%#x,bootindex=%d", i, 0x10+i, first+i))
	}
	if p.tpmSock != "" {
		args = append(args,
			"-chardev", "socket,id=chrtpm,path="+qemuEscape(p.tpmSock),
			"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
			"-device", "tpm-tis,tpmdev=tpm0")
	}
	if len(o.forwards) > 0 {
		netdev := "user,id=n0,restrict=on"
		for _, f := range o.forwards {
			netdev += ",guestfwd=" + qemuEscape(fmt.Sprintf("tcp:10.0.2.100:%d-cmd:%s 127.0.0.1 %d",
				f.guestPort, p.nc, f.hostPort))
		}
		args = append(args, "-netdev", netdev,
			"-device", "virtio-net-pci,netdev=n0,romfile=,addr=0x8")
	}
	if o.noReboot {
		args = append(args, "-no-reboot")
	}
	return args
}

// qemuEscape doubles commas, QEMU's quoting inside option values.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// machineVars returns dir/OVMF_VARS.fd, copying the pristine vars file
// there first if it is absent.
func machineVars(dir string, pristine tool) (string, error) {
	dst := filepath.Join(dir, "OVMF_VARS.fd")
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("checking ovmf vars: %w", err)
	}
	src, err := pristine.find()
	if err != nil {
		return "", err
	}
	if err := copyFile(dst, src); err != nil {
		return "", fmt.Errorf("copying ovmf vars: %w", err)
	}
	return dst, nil
}

// copyFile copies src to dst through a temporary file and a rename.
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-"+filepath.Base(dst))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// existingFile returns the absolute path of a file (or device).
func existingFile(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	if fi.IsDir() {
		return "", fmt.Errorf("%s: expected a file, got a directory", abs)
	}
	return abs, nil
}

func appendFile(list []string, path string) ([]string, error) {
	abs, err := existingFile(path)
	if err != nil {
		return list, err
	}
	return append(list, abs), nil
}

// tailFile returns the last max bytes of a small log file, trimmed.
func tailFile(path string, max int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		f.Seek(fi.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, max)) // a log tail, bounded
	return strings.TrimSpace(string(b))
}

// HoldTPM makes the TPM answer late: it stops swtpm (SIGSTOP, by PID) until
// the guest is stuck waiting for it, then lets it go on (SIGCONT), and
// returns how long it held it. The guest's TPM driver gives up on the
// command it sent meanwhile ("tpm tpm0: Operation Timed out") and cancels
// it; QEMU's cancel blocks the virtual CPU on the stopped swtpm, so QEMU
// using no CPU for 3 s is the sign that the guest is stuck. swtpm then
// executes the command, as a starved emulator would. max bounds the hold;
// a guest that never touches the TPM is let go after it, as is one whose
// QEMU process ends.
func (v *VM) HoldTPM(ctx context.Context, max time.Duration) (time.Duration, error) {
	if v.tpm == nil {
		return 0, errors.New("holding the TPM: the VM has no TPM (start it WithTPM)")
	}
	tpm := v.tpm.cmd.Process
	if err := tpm.Signal(syscall.SIGSTOP); err != nil {
		return 0, fmt.Errorf("stopping swtpm: %w", err)
	}
	start := time.Now()
	defer tpm.Signal(syscall.SIGCONT)
	const idle, every = 3 * time.Second, 250 * time.Millisecond
	last, since := int64(-1), time.Now()
	for time.Since(start) < max {
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-v.exited:
			return time.Since(start), v.exitCause()
		case <-time.After(every):
		}
		cpu, err := cpuTicks(v.cmd.Process.Pid)
		if err != nil {
			return time.Since(start), err
		}
		if cpu != last {
			last, since = cpu, time.Now()
		} else if time.Since(since) >= idle {
			break
		}
	}
	held := time.Since(start)
	if err := tpm.Signal(syscall.SIGCONT); err != nil {
		return held, fmt.Errorf("continuing swtpm: %w", err)
	}
	return held, nil
}

// cpuTicks returns the user and system CPU time of a process, in clock
// ticks (/proc/PID/stat fields 14 and 15).
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count after its ')'.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: expected at least 15 fields", pid)
	}
	user, err1 := strconv.ParseInt(f[11], 10, 64)
	sys, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q: expected numbers", pid, f[11], f[12])
	}
	return user + sys, nil
}
