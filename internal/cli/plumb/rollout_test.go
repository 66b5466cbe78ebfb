package plumb

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/internal/cli/plumbd"
	"github.com/plumb-os/plumb/server"
	"github.com/plumb-os/plumb/server/store"
	"github.com/plumb-os/plumb/updater/agent"
	"github.com/plumb-os/plumb/updater/device"
	"github.com/plumb-os/plumb/updater/fetch"
	"github.com/plumb-os/plumb/updater/identity"
	"github.com/plumb-os/plumb/updater/report"
	"github.com/plumb-os/plumb/updater/slot"
)

const rolloutHW = "qemu-x86_64"

// runRolloutVerb runs `plumb rollout ARGS` the way RunPlumb does.
func runRolloutVerb(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &cli.Env{Stdout: &out, Stderr: &errb, Log: cli.NewLogger(&errb, false)}
	root := &cobra.Command{Use: "plumb", SilenceUsage: true, SilenceErrors: true}
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cli.BadInput(err) })
	root.AddCommand(newRolloutCmd(e))
	err := root.ExecuteContext(t.Context())
	if err != nil && cli.IsCobraUsageError(err) {
		err = cli.BadInput(err)
	}
	return cli.ExitCode(err, &errb, "plumb"), out.String(), errb.String()
}

// rolloutRig is a repository with 1.0.0 and 2.0.0 served by plumb serve
// (its halt controller on) over HTTPS on 127.0.0.1.
type rolloutRig struct {
	dir, url string
	hc       *http.Client
	root1    []byte
}

func newRolloutRig(t *testing.T, serveArgs ...string) *rolloutRig {
	t.Helper()
	r := &rolloutRig{dir: filepath.Join(t.TempDir(), "repo")}
	if code, _, stderr := runRepoVerbs(t, "repo", "init", r.dir); code != 0 {
		t.Fatalf("repo init: %s", stderr)
	}
	for _, v := range []string{"1.0.0", "2.0.0"} {
		if code, _, stderr := runRepoVerbs(t, "publish", r.dir, "--release", writeBuild(t, v, "image "+v)); code != 0 {
			t.Fatalf("publish %s: %s", v, stderr)
		}
	}
	var err error
	if r.root1, err = os.ReadFile(filepath.Join(r.dir, "repository", "metadata", "1.root.json")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- runServeCmd(ctx, append([]string{r.dir, "--addr", "127.0.0.1:0", "--access-log=false"}, serveArgs...), &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		if c := <-code; c != cli.ExitOK {
			t.Errorf("serve exit code %d: %s", c, stderr.String())
		}
	})
	re := regexp.MustCompile(`(?m)^URL:\s+(https://\S+)/\s.*\nCA:\s+(\S+)`)
	var m []string
	for deadline := time.Now().Add(20 * time.Second); m == nil; {
		if time.Now().After(deadline) {
			t.Fatalf("serve printed no URL; stdout %q stderr %q", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
		m = re.FindStringSubmatch(stdout.String())
	}
	r.url = m[1]
	caPEM, err := os.ReadFile(m[2])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	r.hc = &http.Client{Transport: tr, Timeout: time.Minute}
	return r
}

// report posts n status reports, each from a new device that tried
// 2.0.0, as updater/agent's state reports it: the first failed of them
// rolled back from it, the others committed it. Each device is a
// real one to plumb serve: its own identity key file and the join token
// plumb serve wrote to DIR/join-token, sent over mutual TLS by the client
// plumbd uses (updater/identity, updater/report), so serve authenticates
// it, joins it to the default organization and records its outcome in
// the fleet store. The prefix only names the devices' key files.
func (r *rolloutRig) report(t *testing.T, prefix string, n, failed int) {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(r.dir, server.JoinTokenFile))
	if err != nil {
		t.Fatalf("join token: %v", err)
	}
	keys := t.TempDir()
	for i := range n {
		st := map[string]any{"release": map[string]string{"hardware": rolloutHW, "version": "2.0.0"},
			"update": map[string]any{"phase": "committed", "version": "2.0.0", "event": "committed 2.0.0"}}
		if i < failed {
			st = map[string]any{"release": map[string]string{"hardware": rolloutHW, "version": "1.0.0"},
				"update": map[string]any{"phase": "idle", "bad": map[string]string{"2.0.0": "boot failed"}, "event": "rolled back from 2.0.0: boot failed"}}
		}
		id, err := identity.FromFile(filepath.Join(keys, fmt.Sprintf("%s-%d.key", prefix, i)))
		if err != nil {
			t.Fatal(err)
		}
		hc, err := report.DeviceClient(r.hc, id, strings.TrimSpace(string(tok)))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(report.Body{Device: report.Device{ID: id.ID, PublicKey: id.PublicKey}, Status: st})
		resp, err := hc.Post(report.URL(r.url, id.ID), "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("report %s-%d (%s): %s %s", prefix, i, id.ID, resp.Status, msg)
		}
	}
}

// client is a device's TUF client (go-tuf through updater/fetch), with its
// own trusted metadata directory.
func (r *rolloutRig) client(t *testing.T) *fetch.Client {
	t.Helper()
	c, err := fetch.New(fetch.Options{Repo: r.url, MetadataDir: t.TempDir(), TrustedRoot: r.root1, HTTPClient: r.hc})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// targets refreshes c and returns the verified targets as the agent sees them.
func targets(t *testing.T, c *fetch.Client) []release.Target {
	t.Helper()
	if err := c.Refresh(t.Context()); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	ts, err := c.Targets()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]release.Target, len(ts))
	for i, x := range ts {
		out[i] = release.Target{Path: x.Path, Custom: x.Custom, Length: x.Length, SHA256: x.SHA256}
	}
	return out
}

// admitted counts, of 1,000 synthetic devices running 1.0.0 in group, how
// many choose 2.0.0 at now (new agents), and how many an old agent (which
// reads only the rollout percentage) would.
func admitted(t *testing.T, ts []release.Target, group string, now time.Time) (newAgents, oldAgents int) {
	t.Helper()
	var rollout int
	for _, x := range ts {
		if x.Path == release.TargetPath(rolloutHW, "2.0.0") {
			f, err := release.Parse(x.Custom)
			if err != nil {
				t.Fatal(err)
			}
			rollout = f.Rollout
		}
	}
	for i := range 1000 {
		id := fmt.Sprintf("device-%04d", i)
		c, _ := release.Choose(ts, release.Want{Hardware: rolloutHW, Channel: "stable", Running: "1.0.0", DeviceID: id, Group: group, Now: now})
		isNew := c != nil && c.Facts.Version == "2.0.0"
		if isNew {
			newAgents++
		}
		if release.InRollout(id, "2.0.0", rollout) {
			oldAgents++
			if !isNew && group == "" {
				t.Errorf("%s: an old agent (rollout %d%%) installs 2.0.0, which the waves exclude at %s", id, rollout, now)
			}
		}
	}
	return newAgents, oldAgents
}

func within(got, percent int) bool { return got >= percent*10-45 && got <= percent*10+45 }

// TestRolloutWavesPauseResume: waves set with plumb rollout reach devices
// through plumb serve (HTTPS, TUF) and admit their share of 1,000 device
// ids at each step; a group has its own schedule; pause admits nobody (old
// agents included); resume re-admits.
func TestRolloutWavesPauseResume(t *testing.T) {
	r := newRolloutRig(t, "--rollout-watch=false")
	c := r.client(t)
	now := time.Now()
	if code, out, stderr := runRolloutVerb(t, "rollout", "set", "2.0.0", "--repo", r.dir, "--wave", "10%@now", "--wave", "50%@+24h", "--wave", "100%@+3d"); code != 0 {
		t.Fatalf("rollout set: %d %s", code, stderr)
	} else if !strings.Contains(out, "rolling out") || !strings.Contains(out, " 50% from ") {
		t.Errorf("rollout set printed %q", out)
	}
	if code, _, stderr := runRolloutVerb(t, "rollout", "set", rolloutHW+"/2.0.0", "--repo", r.dir, "--group", "canary", "--wave", "100%"); code != 0 {
		t.Fatalf("rollout set --group canary: %s", stderr)
	}
	ts := targets(t, c)
	for _, step := range []struct {
		name    string
		group   string
		at      time.Duration
		percent int
		old     int // what old agents admit: the share at signing time
	}{
		{"first wave", "", time.Minute, 10, 10},
		{"second wave", "", 24*time.Hour + time.Minute, 50, 10},
		{"last wave", "", 72*time.Hour + time.Minute, 100, 10},
		{"canary at once", "canary", time.Minute, 100, 10},
		{"unknown group follows the default", "field", 24*time.Hour + time.Minute, 50, 10},
	} {
		n, old := admitted(t, ts, step.group, now.Add(step.at))
		t.Logf("%s: %d of 1000 admitted (old agents %d)", step.name, n, old)
		if !within(n, step.percent) || !within(old, step.old) {
			t.Errorf("%s: %d of 1000 admitted, old agents %d; want about %d%% and %d%%", step.name, n, old, step.percent, step.old)
		}
	}

	if code, out, stderr := runRolloutVerb(t, "rollout", "pause", "2.0.0", "--repo", r.dir); code != 0 || !strings.Contains(out, "paused") {
		t.Fatalf("rollout pause: %d %q %s", code, out, stderr)
	}
	ts = targets(t, c)
	if n, old := admitted(t, ts, "", now.Add(100*time.Hour)); n != 0 || old != 0 {
		t.Errorf("paused: %d devices admitted, old agents %d; want none", n, old)
	}
	if n, _ := admitted(t, ts, "canary", now); n != 0 {
		t.Errorf("paused: %d canary devices admitted, want none", n)
	}
	if code, _, stderr := runRolloutVerb(t, "rollout", "resume", "2.0.0", "--repo", r.dir); code != 0 {
		t.Fatalf("rollout resume: %s", stderr)
	}
	ts = targets(t, c)
	if n, _ := admitted(t, ts, "", now.Add(100*time.Hour)); n != 1000 {
		t.Errorf("resumed, after the last wave: %d of 1000 admitted, want all", n)
	}

	// Every change is in the fleet service's audit log (plumb serve made
	// DIR/fleet.db), with who made it.
	audit := auditLog(t, r.dir)
	for _, a := range []string{`"action":"rollout.set"`, `"action":"rollout.pause"`, `"action":"rollout.resume"`} {
		if !strings.Contains(audit, a) || !strings.Contains(audit, `"target":"qemu-x86_64/2.0.0"`) {
			t.Errorf("audit log lacks %s on qemu-x86_64/2.0.0:\n%s", a, audit)
		}
	}
	if _, err := os.Stat(filepath.Join(r.dir, auditFile)); err == nil {
		t.Errorf("%s written although the fleet database keeps the audit log", auditFile)
	}
}

// auditLog is the default organization's audit log in DIR/fleet.db, one
// JSON object per line.
func auditLog(t *testing.T, dir string) string {
	t.Helper()
	st, err := store.Open(t.Context(), filepath.Join(dir, "fleet.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	org, err := st.OrgByName(t.Context(), "default")
	if err != nil {
		t.Fatal(err)
	}
	es, err := st.AuditLog(t.Context(), org.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range es {
		js, _ := json.Marshal(e)
		b.Write(js)
		b.WriteByte('\n')
	}
	return b.String()
}

// TestRolloutHaltWhilePolling: devices report to plumb serve; when the
// failure rate among those that tried 2.0.0 passes the threshold, serve's
// halt controller halts it through TUF; real agents that keep polling
// meanwhile and had not started 2.0.0 do not start it, and plumbd status
// shows why.
func TestRolloutHaltWhilePolling(t *testing.T) {
	r := newRolloutRig(t, "--watch-interval", "100ms", "--min-sample", "10", "--failure-threshold", "30")
	if code, _, stderr := runRolloutVerb(t, "rollout", "set", "2.0.0", "--repo", r.dir, "--wave", "10%@now", "--wave", "100%@+24h"); code != 0 {
		t.Fatalf("rollout set: %s", stderr)
	}
	// Four polling devices, outside the 10% wave: none has started.
	var devs []*pollingDevice
	for i := 0; len(devs) < 4; i++ {
		if id := fmt.Sprintf("waiting-%d", i); release.Bucket(id, "2.0.0") >= 10 {
			devs = append(devs, newPollingDevice(t, r, id))
		}
	}
	for _, d := range devs {
		if installed, err := d.a.Poll(t.Context()); installed || err != nil {
			t.Fatalf("%s: Poll before the halt = %v, %v; want no update", d.a.DeviceID, installed, err)
		}
		if got := d.a.State().LastResult; !strings.Contains(got, "not in its rollout yet (10% admitted, 100% from ") {
			t.Errorf("%s: before the halt, last_result %q; want the wave it waits for", d.a.DeviceID, got)
		}
	}

	// They keep polling, each on its own; meanwhile ten devices that
	// tried 2.0.0 report, four of them rolled back (40%), and serve's
	// controller halts it.
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	results := make(chan string, len(devs))
	for _, d := range devs {
		go func() { results <- d.pollUntilHalted(ctx) }()
	}
	r.report(t, "early", 10, 4)
	wantReason := "failure rate 40% (4 of 10 devices that tried it) passed the threshold 30% (minimum sample 10)"
	for range devs {
		if err := <-results; err != "" {
			t.Error(err)
		}
	}
	for _, d := range devs {
		if last := d.a.State().LastResult; !strings.Contains(last, wantReason) || !strings.Contains(last, "by plumb rollout watch") {
			t.Errorf("%s: last_result %q; want the reason %q and who halted it", d.a.DeviceID, last, wantReason)
		}
	}
	devRoot := devs[0].root

	// plumbd status shows it.
	var out, errb bytes.Buffer
	if code := plumbd.Run(t.Context(), []string{"status", "--root", devRoot}, &out, &errb); code != 0 {
		t.Fatalf("plumbd status: %d %s", code, errb.String())
	}
	var status struct {
		Update struct {
			LastResult string `json:"last_result"`
		} `json:"update"`
	}
	if err := json.Unmarshal(out.Bytes(), &status); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(status.Update.LastResult, wantReason) {
		t.Errorf("plumbd status update.last_result = %q, want the halt reason", status.Update.LastResult)
	}

	// Every device, in every group and at any time, is held back; old
	// agents read rollout 0.
	ts := targets(t, r.client(t))
	for _, g := range []string{"", "canary"} {
		if n, old := admitted(t, ts, g, time.Now().Add(48*time.Hour)); n != 0 || old != 0 {
			t.Errorf("halted, group %q: %d admitted, old agents %d; want none", g, n, old)
		}
	}
	audit := auditLog(t, r.dir)
	if !strings.Contains(audit, `"actor":"plumb rollout watch (failure threshold 30%, min sample 10)","action":"rollout.halt","target":"qemu-x86_64/2.0.0"`) {
		t.Errorf("audit log lacks the halt and its actor:\n%s", audit)
	}

	// Ten more devices commit 2.0.0 (4 of 20 failed: 20%, under the
	// threshold; at 40% the controller would halt it again at its next
	// check), then an operator resumes: the waves apply again, and stay.
	r.report(t, "late", 10, 0)
	if code, _, stderr := runRolloutVerb(t, "rollout", "resume", "2.0.0", "--repo", r.dir); code != 0 {
		t.Fatalf("rollout resume: %s", stderr)
	}
	// The controller's check, run once more by hand, leaves it running.
	if code, out, stderr := runRolloutVerb(t, "rollout", "watch", "--once", "--repo", r.dir, "--min-sample", "10", "--failure-threshold", "30"); code != 0 || out != "" {
		t.Fatalf("rollout watch --once after the resume: exit %d, %q %s; want no halt", code, out, stderr)
	}
	ts = targets(t, r.client(t))
	if n, _ := admitted(t, ts, "", time.Now().Add(48*time.Hour)); n != 1000 {
		t.Errorf("resumed: %d of 1000 admitted after the last wave, want all", n)
	}
}

// pollingDevice is a device running 1.0.0 with a real agent (its own TUF
// client, state file and configuration under root) whose slots are never
// written: the tests that use it must not let it install.
type pollingDevice struct {
	a    *agent.Agent
	root string
}

func newPollingDevice(t *testing.T, r *rolloutRig, id string) *pollingDevice {
	t.Helper()
	d := &pollingDevice{root: t.TempDir()}
	cfg := &config.Config{Repository: r.url, Hardware: rolloutHW, Channel: "stable", Poll: config.Duration(time.Second), Commit: "health", DataDir: "/data/plumb"}
	cfgJSON, _ := json.Marshal(cfg)
	for p, data := range map[string][]byte{config.Path: cfgJSON, "data/plumb/.keep": nil, "esp/loader/entries/.keep": nil} {
		p = filepath.Join(d.root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d.a = &agent.Agent{
		Config:    cfg,
		Facts:     device.Facts{Release: release.ImageInfo{Version: "1.0.0", Hardware: rolloutHW, Channel: "stable"}, Slot: "a"},
		Repo:      r.client(t),
		Device:    &slot.Device{ESP: slot.DirESP(filepath.Join(d.root, "esp")), Running: "a"},
		StatePath: filepath.Join(d.root, "data/plumb/state.json"),
		DeviceID:  id,
	}
	if err := d.a.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	return d
}

// pollUntilHalted polls every 50ms until the device sees a halt; it
// returns what went wrong, "" when nothing did.
func (d *pollingDevice) pollUntilHalted(ctx context.Context) string {
	for {
		installed, err := d.a.Poll(ctx)
		switch {
		case ctx.Err() != nil:
			return fmt.Sprintf("%s: no halt seen; last_result %q", d.a.DeviceID, d.a.State().LastResult)
		case installed || err != nil:
			return fmt.Sprintf("%s: Poll = %v, %v; want no update", d.a.DeviceID, installed, err)
		case strings.Contains(d.a.State().LastResult, "halted"):
			return ""
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestRolloutBadInput: bad flags and releases get one line and exit 2,
// and change nothing.
func TestRolloutBadInput(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	if code, _, stderr := runRepoVerbs(t, "repo", "init", dir); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := runRepoVerbs(t, "publish", dir, "--release", writeBuild(t, "2.0.0", "image")); code != 0 {
		t.Fatal(stderr)
	}
	before := dirDigest(t, dir)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"set", "2.0.0"}, "--wave: expected at least one step"},
		{[]string{"set", "2.0.0", "--wave", "150%@now"}, `percentage "150%" is not 0..100`},
		{[]string{"set", "2.0.0", "--wave", "10%@tomorrow"}, `time "tomorrow" is not RFC 3339`},
		{[]string{"set", "2.0.0", "--wave", "10%@+soon"}, `duration "+soon"`},
		{[]string{"set", "2.0.0", "--wave", "50%@now", "--wave", "10%@+1h"}, "expected at least 50"},
		{[]string{"set", "2.0.0", "--wave", "10%", "--group", "Bad/Group"}, "--group: expected a group name"},
		{[]string{"pause", "3.0.0"}, "version 3.0.0: expected a published version"},
		{[]string{"pause", "rpi4/2.0.0"}, "rpi4/2.0.0: expected a published release"},
		{[]string{"halt", "2.0.0"}, "--reason: expected why"},
		{[]string{"watch", "--once", "--failure-threshold", "0"}, "failure threshold: expected a share between"},
		{[]string{"watch", "--once", "--min-sample", "0"}, "minimum sample: expected at least 1"},
	} {
		code, _, stderr := runRolloutVerb(t, append(append([]string{"rollout"}, tc.args...), "--repo", dir)...)
		if code != cli.ExitBadInput || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("plumb rollout %q: exit %d, stderr %q; want 2 and one line containing %q", tc.args, code, stderr, tc.want)
		}
	}
	if dirDigest(t, dir) != before {
		t.Error("a refused rollout command changed the repository")
	}
}

// dirDigest lists every file of dir with its content (the lock file aside).
func dirDigest(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || fi.Name() == "lock" {
			return err
		}
		data, err := os.ReadFile(p)
		fmt.Fprintf(&b, "%s %d %x\n", p, len(data), data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// FuzzParseWave: any --wave value gives a wave of 0..100% or one error line.
func FuzzParseWave(f *testing.F) {
	for _, s := range []string{"10%@now", "50%@+24h", "100%@+3d", "5%@2026-12-24T08:00:00Z", "10%", "@", "%@+", "-1%@now", "10%@+-1h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := parseWave(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") && !strings.Contains(s, "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if w.percent < 0 || w.percent > 100 || w.rel < 0 {
			t.Fatalf("parseWave(%q) = %+v", s, w)
		}
	})
}
