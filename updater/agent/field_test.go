package agent

// Host tests of the install policy, approvals, application locks and
// hooks (issue 15), on the rig of integration_test.go: a real signed
// repository over HTTPS, the real fetch client, slots as files, the ESP a
// directory, Reboot counted. Hooks are real executables (shell scripts)
// run by the agent.

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/format/release"
)

const testDeviceID = "abcdefghijklmnop"

// TestDownloadOnlyApproval: with install: download-only the release is
// downloaded and verified into slot b and waits as ready, saying why; an
// approval for another device changes nothing; one for this device's
// group, published in the repository, installs it.
func TestDownloadOnlyApproval(t *testing.T) {
	r := newRig(t, tufrepo.Options{})
	a := r.agent(t, "a", v1, nil)
	a.DeviceID = testDeviceID
	a.Config.Install, a.Config.Group = config.InstallDownloadOnly, "site-a"
	if err := a.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.publish(t, v2)
	for range 2 {
		if installed, err := a.Poll(t.Context()); installed || err != nil {
			t.Fatalf("Poll = %v, %v; want the release ready, not installed", installed, err)
		}
		st := r.state(t)
		if st.Phase != PhaseReady || st.Version != v2 || st.Waiting != WaitApproval ||
			!strings.Contains(st.Reason, "plumb approve REPO --hardware test --version "+v2+" --device abcdefghijklmnop or --group site-a") {
			t.Fatalf("state = phase %s version %s waiting %s reason %q; want ready, waiting for approval", st.Phase, st.Version, st.Waiting, st.Reason)
		}
		if got := r.entries(t); !equal(got, []string{"plumb-1.0.0.conf"}) || r.reboots != 0 {
			t.Fatalf("entries %q, reboots %d; want v1's only and none", got, r.reboots)
		}
		repo, err := tufrepo.Open(r.repoDir, r.repoOpts)
		if err != nil {
			t.Fatal(err)
		}
		if err := repo.Approve(t.Context(), hardware, v2, release.Approval{Devices: []string{"zzzzzzzzzzzzzzzz"}}); err != nil {
			t.Fatal(err)
		}
	}
	// A reboot (power cut) keeps the release ready: plumbd starts again.
	a = r.agent(t, "a", v1, nil)
	a.DeviceID = testDeviceID
	a.Config.Install, a.Config.Group = config.InstallDownloadOnly, "site-a"
	if err := a.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := r.state(t); st.Phase != PhaseReady || st.Version != v2 {
		t.Fatalf("after a restart: phase %s version %s, want ready "+v2, st.Phase, st.Version)
	}
	repo, _ := tufrepo.Open(r.repoDir, r.repoOpts)
	if err := repo.Approve(t.Context(), hardware, v2, release.Approval{Groups: []string{"site-a"}}); err != nil {
		t.Fatal(err)
	}
	installV2(t, r, a)
}

// TestLocalApprovalAndWindow: a release held by the install window waits
// as ready with the window in its reason; one held for approval installs
// when a local user approves it (plumbd approve: a request to the agent).
func TestLocalApprovalAndWindow(t *testing.T) {
	r := newRig(t, tufrepo.Options{})
	r.publish(t, v2)
	a := r.agent(t, "a", v1, nil)
	a.DeviceID = testDeviceID
	now := time.Now().UTC()
	a.Config.Install = now.Add(2*time.Hour).Format("15:04") + "-" + now.Add(3*time.Hour).Format("15:04")
	if err := a.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	if installed, err := a.Poll(t.Context()); installed || err != nil {
		t.Fatalf("Poll = %v, %v; want ready", installed, err)
	}
	if st := r.state(t); st.Phase != PhaseReady || st.Waiting != WaitWindow || !strings.Contains(st.Reason, "only in the window "+a.Config.Install+" UTC, which opens at") {
		t.Fatalf("state = phase %s waiting %s reason %q; want ready, waiting for the window", st.Phase, st.Waiting, st.Reason)
	}

	a.Config.Install = config.InstallDownloadOnly
	if err := a.handle(t.Context(), Request{Kind: ReqApprove, Arg: "9.9.9"}); err == nil || err.Error() != "approve: 9.9.9 is not the ready release ("+v2+" is)" {
		t.Errorf("approve 9.9.9 = %v, want a refusal naming the ready release", err)
	}
	if err := a.handle(t.Context(), Request{Kind: ReqApprove}); err != nil {
		t.Fatal(err)
	}
	if installed, err := a.resumeReady(t.Context()); !installed || err != nil {
		t.Fatalf("resumeReady after plumbd approve = %v, %v; want installed", installed, err)
	}
	if r.reboots != 1 || r.state(t).Phase != PhaseRebooting {
		t.Errorf("reboots %d, phase %s; want one reboot into "+v2, r.reboots, r.state(t).Phase)
	}
}

// TestLocksDeferInstallAndReboot: a held lock defers the install (the
// reason names it); a lock taken after the install defers the reboot until
// it is released; a lock nobody releases ends at the maximum hold time.
func TestLocksDeferInstallAndReboot(t *testing.T) {
	r := newRig(t, tufrepo.Options{})
	r.publish(t, v2)
	a := r.agent(t, "a", v1, nil)
	a.Locks = &Locks{MaxHold: time.Hour}
	if err := a.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Locks.Take("db-backup", "pid 42 uid 0", 0); err != nil {
		t.Fatal(err)
	}
	if installed, err := a.Poll(t.Context()); installed || err != nil {
		t.Fatalf("Poll with a lock held = %v, %v; want deferred", installed, err)
	}
	st := r.state(t)
	if st.Waiting != WaitLock || !regexp.MustCompile(`^install of `+regexp.QuoteMeta(v2)+` deferred: lock db-backup \(pid 42 uid 0\) held since \S+, at most until \S+$`).MatchString(st.Reason) {
		t.Fatalf("state waiting %s reason %q; want deferred by lock db-backup", st.Waiting, st.Reason)
	}
	if len(st.Locks) != 1 || st.Locks[0].Name != "db-backup" {
		t.Errorf("state locks = %+v, want db-backup", st.Locks)
	}
	a.Locks.Release("db-backup")

	// Released, the install proceeds to the reboot.
	if installed, err := a.Poll(t.Context()); !installed || err != nil || r.reboots != 1 {
		t.Fatalf("Poll after the release = %v, %v (%d reboots); want installed and rebooted", installed, err, r.reboots)
	}

	// A lock held at the reboot defers it until released.
	a.Locks.Take("app", "", 0)
	done := make(chan error, 1)
	go func() { done <- a.rebootPerPolicy(t.Context(), v2) }()
	waitFor(t, func() bool { s, err := LoadState(a.StatePath); return err == nil && s.Waiting == WaitLock })
	if r.reboots != 1 {
		t.Fatalf("rebooted with a lock held")
	}
	if !strings.HasPrefix(r.state(t).Reason, "reboot into "+v2+" deferred: lock app") {
		t.Errorf("reason %q, want the reboot deferred by lock app", r.state(t).Reason)
	}
	a.Locks.Release("app")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r.reboots != 2 {
		t.Fatalf("reboots %d after the release, want 2", r.reboots)
	}

	// Maximum hold time: nobody releases it.
	a.Locks.MaxHold = 300 * time.Millisecond
	a.Locks.Take("crashed-app", "", 0)
	if err := a.rebootPerPolicy(t.Context(), v2); err != nil {
		t.Fatal(err)
	}
	if r.reboots != 3 {
		t.Fatalf("reboots %d after the lock's maximum hold time, want 3", r.reboots)
	}
}

// waitFor polls cond (the agent runs in another goroutine); the test's
// deadline bounds it.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-t.Context().Done():
			t.Fatal("condition never met")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// script writes an executable shell script.
func script(t *testing.T, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHooks: a failing, missing or not executable pre-install hook
// discards the release before the slot is written, with the hook's name
// and output as the reason; a passing post-install hook runs with a clean
// environment; a failing first-boot hook rolls the release back.
func TestHooks(t *testing.T) {
	for _, tt := range []struct {
		name string
		hook func(t *testing.T) string
		want string
	}{
		{"fails", func(t *testing.T) string {
			return script(t, "echo stopping app\necho cannot stop app: busy >&2\nexit 3\n", 0o755)
		},
			`^pre-install hook \S+ failed: exit status 3: output: stopping app \| cannot stop app: busy$`},
		{"missing", func(t *testing.T) string { return "/no/such/hook" },
			`^pre-install hook /no/such/hook failed: missing: no such file$`},
		{"not executable", func(t *testing.T) string { return script(t, "exit 0\n", 0o644) },
			`^pre-install hook \S+ failed: not executable \(mode 0644\)$`},
		{"times out", func(t *testing.T) string { return script(t, "echo started\nsleep 30\n", 0o755) },
			`^pre-install hook \S+ failed: timed out after 300ms: output: started$`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tufrepo.Options{})
			r.publish(t, v2)
			a := r.agent(t, "a", v1, nil)
			a.Config.Hooks = &config.Hooks{PreInstall: &config.Hook{Run: tt.hook(t), Timeout: config.Duration(300 * time.Millisecond)}}
			if err := a.Settle(t.Context()); err != nil {
				t.Fatal(err)
			}
			sumB := sumFile(t, r.slots["b"].Device, -1)
			installed, err := a.Poll(t.Context())
			if installed || err == nil || !regexp.MustCompile(tt.want).MatchString(err.Error()) {
				t.Fatalf("Poll = %v, %v; want %q", installed, err, tt.want)
			}
			st := r.state(t)
			if st.Bad[v2] != err.Error() || st.Event != "discarded "+v2+": "+err.Error() || st.Hook == nil || st.Hook.Stage != "pre-install" || st.Hook.Error != err.Error() {
				t.Errorf("state bad %q event %q hook %+v; want the hook's failure", st.Bad, st.Event, st.Hook)
			}
			if sumFile(t, r.slots["b"].Device, -1) != sumB || r.reboots != 0 || !equal(r.entries(t), []string{"plumb-1.0.0.conf"}) {
				t.Errorf("slot b, entries or reboots changed")
			}
		})
	}

	t.Run("post-install and first-boot", func(t *testing.T) {
		r := newRig(t, tufrepo.Options{})
		r.publish(t, v2)
		a := r.agent(t, "a", v1, nil)
		envFile := filepath.Join(t.TempDir(), "env")
		a.Config.Hooks = &config.Hooks{PostInstall: &config.Hook{Run: script(t, "env | sort > "+envFile+"\n", 0o755)}}
		t.Setenv("SECRET_TOKEN", "leak")
		if err := a.Settle(t.Context()); err != nil {
			t.Fatal(err)
		}
		installV2(t, r, a)
		env := string(readFile(t, envFile))
		for _, want := range []string{"PATH=" + hookPath + "\n", "PLUMB_STAGE=post-install\n", "PLUMB_VERSION=" + v2 + "\n", "PLUMB_RUNNING=1.0.0\n"} {
			if !strings.Contains(env, want) {
				t.Errorf("hook environment lacks %q:\n%s", want, env)
			}
		}
		if strings.Contains(env, "SECRET_TOKEN") {
			t.Errorf("hook environment is not clean:\n%s", env)
		}

		bootTrial(t, r, "plumb-"+strings.ReplaceAll(v2, "+", "_")+"+2-1.conf")
		b := r.agent(t, "b", v2, nil)
		b.Config.Hooks = &config.Hooks{FirstBoot: &config.Hook{Run: script(t, "echo migrating /data to schema 7\necho migration 7 failed: disk full\nexit 1\n", 0o755)}}
		if err := b.Settle(t.Context()); err != nil {
			t.Fatal(err)
		}
		if r.reboots != 2 {
			t.Fatalf("reboots %d, want 2 (into the trial, back to slot a)", r.reboots)
		}
		back := r.agent(t, "a", v1, nil)
		rollbackEnv := filepath.Join(t.TempDir(), "rollback-env")
		back.Config.Hooks = &config.Hooks{Rollback: &config.Hook{Run: script(t, "env | sort > "+rollbackEnv+"\n", 0o755)}}
		if err := back.Settle(context.Background()); err != nil {
			t.Fatal(err)
		}
		if env := string(readFile(t, rollbackEnv)); !strings.Contains(env, "PLUMB_STAGE=rollback\n") || !strings.Contains(env, "PLUMB_FAILED_VERSION="+v2+"\n") || !strings.Contains(env, "PLUMB_VERSION=1.0.0\n") {
			t.Errorf("rollback hook environment:\n%s", env)
		}
		st := r.state(t)
		want := regexp.MustCompile(`^rolled back from ` + regexp.QuoteMeta(v2) + `: first-boot hook \S+ failed: exit status 1: output: migrating /data to schema 7 \| migration 7 failed: disk full$`)
		if !want.MatchString(st.Event) || !want.MatchString("rolled back from "+v2+": "+st.Bad[v2]) {
			t.Errorf("state event %q, bad %q; want the rollback with the hook's name and output", st.Event, st.Bad)
		}
		if st.Hook == nil || st.Hook.Stage != "rollback" || st.Hook.Error != "" { // the last hook that ran
			t.Errorf("state hook %+v, want the rollback hook, passed", st.Hook)
		}
		if !equal(r.entries(t), []string{"plumb-1.0.0.conf"}) {
			t.Errorf("entries %q, want v1's only", r.entries(t))
		}
	})
}
