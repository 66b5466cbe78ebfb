package sim

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc/PID/stat: USER_HZ, 100 on
// every Linux architecture Go runs on (it is part of the kernel's ABI,
// unlike CONFIG_HZ).
const userHZ = 100

// Proc is a sample of a process's resource use.
type Proc struct {
	// CPU is its user plus system CPU time so far; ChildCPU that of its
	// children that ended and were waited for.
	CPU, ChildCPU time.Duration
	// PPID is its parent's process id.
	PPID int
	// RSS is its resident memory now, HWM the peak so far (bytes).
	RSS, HWM int64

	pid int
}

// ReadProc samples the process pid from /proc/PID/stat and
// /proc/PID/status. The CPU time has 10 ms resolution: measure over
// seconds.
func ReadProc(pid int) (Proc, error) {
	p := Proc{pid: pid}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, err
	}
	// The command name (field 2) may hold spaces: the fields after it
	// start after its closing parenthesis.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return p, fmt.Errorf("/proc/%d/stat: expected \"pid (comm) ...\", got %q", pid, stat)
	}
	f := strings.Fields(string(stat[i+1:]))
	// After comm: state(3) ppid(4) ... utime(14) stime(15) cutime(16)
	// cstime(17), i.e. f[1], f[11] to f[14].
	if len(f) < 15 {
		return p, fmt.Errorf("/proc/%d/stat: expected at least 17 fields, got %d", pid, len(f)+2)
	}
	var n [5]int64
	for i, j := range []int{1, 11, 12, 13, 14} {
		v, err := strconv.ParseInt(f[j], 10, 64)
		if err != nil {
			return p, fmt.Errorf("/proc/%d/stat: field %d %q: expected an integer", pid, j+3, f[j])
		}
		n[i] = v
	}
	p.PPID = int(n[0])
	p.CPU = time.Duration(n[1]+n[2]) * time.Second / userHZ
	p.ChildCPU = time.Duration(n[3]+n[4]) * time.Second / userHZ
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return p, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return p, fmt.Errorf("/proc/%d/status: %s %q: expected \"N kB\"", pid, k, v)
		}
		if k == "VmRSS" {
			p.RSS = kb << 10
		} else {
			p.HWM = kb << 10
		}
	}
	return p, nil
}

// ReadTree sums the process pid and its descendants alive now (a
// PostgreSQL postmaster and its backends): CPU includes the children that
// ended (ChildCPU), RSS and HWM are summed (shared pages counted in each
// process).
func ReadTree(pid int) (Proc, error) {
	root, err := ReadProc(pid)
	if err != nil {
		return root, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return root, err
	}
	children := map[int][]Proc{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n == pid {
			continue
		}
		if p, err := ReadProc(n); err == nil {
			children[p.PPID] = append(children[p.PPID], p)
		}
	}
	sum := root
	sum.CPU += root.ChildCPU
	var walk func(int)
	walk = func(parent int) {
		for _, c := range children[parent] {
			sum.CPU += c.CPU + c.ChildCPU
			sum.RSS += c.RSS
			sum.HWM += c.HWM
			walk(c.pid)
		}
	}
	walk(pid)
	return sum, nil
}

// Self is ReadProc of this process.
func Self() (Proc, error) { return ReadProc(os.Getpid()) }
