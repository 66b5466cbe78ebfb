// Command probe runs inside a test container and prints, one "key: value"
// line each, what the container's isolation allows: its status lines
// (seccomp mode, no_new_privs, capability sets, ids), whether a raw socket
// opens, whether the root filesystem and /proc/sys are writable, what
// masked paths hold, a syscall the seccomp profile refuses, the network
// interfaces and whether loopback connects. Built static (CGO_ENABLED=0)
// by the reconcile tests.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
)

func main() {
	if f, err := os.Open("/proc/self/status"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			k, _, _ := strings.Cut(s.Text(), ":")
			switch k {
			case "Uid", "Gid", "Seccomp", "NoNewPrivs", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb":
				fmt.Println(strings.Join(strings.Fields(s.Text()), " "))
			}
		}
		f.Close()
	}
	fmt.Println("pid:", os.Getpid()) // 1 in a PID namespace of its own
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_ICMP)
	if err == nil {
		syscall.Close(fd)
	}
	fmt.Println("raw_socket:", result(err))
	fmt.Println("rootfs_write:", result(os.WriteFile("/probe-write", []byte("x"), 0o644)))
	f, err := os.OpenFile("/proc/sys/kernel/domainname", os.O_WRONLY, 0)
	if err == nil {
		f.Close()
	}
	fmt.Println("proc_sys_write:", result(err))
	// Masked: a file is /dev/null bound over it, a directory an empty
	// read-only tmpfs.
	if st, err := os.Stat("/proc/timer_list"); err != nil {
		fmt.Println("proc_timer_list:", result(err))
	} else {
		fmt.Println("proc_timer_list:", st.Mode().Type().String())
	}
	if ents, err := os.ReadDir("/sys/firmware"); err != nil {
		fmt.Println("sys_firmware:", result(err))
	} else {
		fmt.Println("sys_firmware:", len(ents), "entries")
	}
	// keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1): root
	// may; Docker's seccomp profile refuses it.
	_, _, errno := syscall.Syscall(syscall.SYS_KEYCTL, 0, ^uintptr(2), 1)
	if errno != 0 {
		err = errno
	} else {
		err = nil
	}
	fmt.Println("keyctl:", result(err))
	ifs, err := net.Interfaces()
	var names []string
	for _, i := range ifs {
		n := i.Name
		if i.Flags&net.FlagUp != 0 {
			n += "(up)"
		}
		names = append(names, n)
	}
	if err != nil {
		names = append(names, err.Error())
	}
	fmt.Println("interfaces:", strings.Join(names, ","))
	fmt.Println("loopback:", result(loopback()))
	if len(os.Args) > 1 {
		// probe FILE TEXT: write TEXT to FILE (through a mount).
		fmt.Println("write_arg:", result(os.WriteFile(os.Args[1], []byte(os.Args[2]), 0o644)))
	}
}

// loopback connects to a listener on 127.0.0.1:0.
func loopback() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return err
	}
	return c.Close()
}

func result(err error) string {
	if err == nil {
		return "ok"
	}
	var en syscall.Errno
	if e, ok := err.(*os.PathError); ok {
		err = e.Err
	}
	if e, ok := err.(syscall.Errno); ok {
		en = e
		return fmt.Sprintf("%s (errno %d)", en.Error(), int(en))
	}
	return err.Error()
}
