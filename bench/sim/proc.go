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
	// CPU is its user plus system CPU time so far (children not counted).
	CPU time.Duration
	// RSS is its resident memory now, HWM the peak so far (bytes).
	RSS, HWM int64
}

// ReadProc samples the process pid from /proc/PID/stat and
// /proc/PID/status. The CPU time has 10 ms resolution: measure over
// seconds.
func ReadProc(pid int) (Proc, error) {
	var p Proc
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
	// After comm: state(3) ... utime(14) stime(15), i.e. f[11] and f[12].
	if len(f) < 13 {
		return p, fmt.Errorf("/proc/%d/stat: expected at least 15 fields, got %d", pid, len(f)+2)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return p, fmt.Errorf("/proc/%d/stat: utime %q, stime %q: expected integers", pid, f[11], f[12])
	}
	p.CPU = time.Duration(ut+st) * time.Second / userHZ
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

// Self is ReadProc of this process.
func Self() (Proc, error) { return ReadProc(os.Getpid()) }
