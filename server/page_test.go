package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/attestapi"
	"github.com/plumb-os/plumb/format/bootrecord"
	"github.com/plumb-os/plumb/internal/testutil"
	"github.com/plumb-os/plumb/server/store"
)

// pageFleet is a fleet with history for the page tests: in organization
// "default", device A (installed 1.0.0 by the installer, updated to and
// committed 1.1.0, then attested on a real TPM (swtpm) with a failed
// kernel check) and device R (installed 1.0.0, rolled back from 1.1.0
// with a reason); in organization "tenantb", device B. Every report goes
// over mutual TLS through the real handler.
type pageFleet struct {
	*fleetServer
	a, r, b string // device ids
	reason  string // R's rollback reason
	reasonA string // A's
	rootfs  attestapi.Check
	repoDir string
	users   map[string]string // name -> password
}

func newPageFleet(t *testing.T, dsn string) *pageFleet {
	t.Helper()
	tpm := startTPM(t) // before reading swtpm's CA files (swtpm_setup makes them)
	repoDir := filepath.Join(t.TempDir(), "repo")
	if err := tufrepo.Init(t.Context(), repoDir, tufrepo.Options{}); err != nil {
		t.Fatal(err)
	}
	f1 := publishRelease(t, repoDir, "1.0.0")
	publishRelease(t, repoDir, "1.1.0")
	pool := x509.NewCertPool()
	for _, p := range testutil.SwtpmCAs {
		pem, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("swtpm local CA: %v", err)
		}
		pool.AppendCertsFromPEM(pem)
	}
	fs := newFleetServer(t, dsn, FleetOptions{}, &AttestOptions{ManufacturerCAs: pool}, repoDir)
	pf := &pageFleet{fleetServer: fs, repoDir: repoDir, users: map[string]string{}}
	ctx := t.Context()

	report := func(d *device, status, install any) {
		t.Helper()
		if code, body := fs.post(d, d.id.ID, statusBody(d, status, install)); code != http.StatusNoContent {
			t.Fatalf("status report: %d %s", code, body)
		}
	}
	rel := func(v string) map[string]any { return map[string]any{"version": v, "hardware": "qemu-x86_64"} }
	install := func(d *device) {
		report(d, map[string]any{"phase": "installing", "release": rel("1.0.0")}, map[string]any{"phase": "writing", "version": "1.0.0"})
		report(d, map[string]any{"phase": "installing", "release": rel("1.0.0")}, map[string]any{"phase": "done", "version": "1.0.0"})
		report(d, map[string]any{"release": rel("1.0.0"), "update": map[string]any{"phase": "idle"}}, nil)
	}

	a := fs.device(fs.join)
	pf.a = a.id.ID
	install(a)
	report(a, map[string]any{"release": rel("1.0.0"), "update": map[string]any{"phase": "downloading", "version": "1.1.0"}}, nil)
	report(a, map[string]any{"release": rel("1.0.0"), "update": map[string]any{"phase": "trial", "version": "1.1.0"}}, nil)
	wl := map[string]any{"group": "shop", "containers": []map[string]any{{"name": "web", "state": "running", "health": "healthy"}, {"name": "db", "state": "exited", "health": "", "restarts": 3}}}
	report(a, map[string]any{"release": rel("1.1.0"), "update": map[string]any{"phase": "idle", "event": "committed 1.1.0"}, "workloads": wl}, nil)
	// Then 1.2.0 fails its trial boot and A rolls back to 1.1.0.
	pf.reasonA = "boot counter exhausted: 1.2.0 did not reach healthy in 3 boots"
	report(a, map[string]any{"release": rel("1.1.0"), "update": map[string]any{"phase": "trial", "version": "1.2.0"}, "workloads": wl}, nil)
	report(a, map[string]any{"release": rel("1.1.0"), "update": map[string]any{"phase": "idle", "event": "rolled back from 1.2.0: " + pf.reasonA}, "workloads": wl}, nil)

	r := fs.device(fs.join)
	pf.r = r.id.ID
	pf.reason = "health check failed: web: connection refused <script>alert(1)</script>"
	install(r)
	report(r, map[string]any{"release": rel("1.0.0"), "update": map[string]any{"phase": "trial", "version": "1.1.0"}}, nil)
	report(r, map[string]any{"release": rel("1.0.0"), "update": map[string]any{"phase": "idle", "event": "rolled back from 1.1.0: " + pf.reason,
		"bad": map[string]string{"1.1.0": pf.reason}}}, nil)

	// A's attestation, on swtpm, with a tampered root filesystem: PCR 15
	// and the measurement log say another rootfs than the release's, so
	// the rootfs check fails with its expected and actual values.
	c, err := attestapi.NewClient(fs.hs.URL, a.hc)
	if err != nil {
		t.Fatal(err)
	}
	plumbLog := []bootrecord.Measurement{bootrecord.RootfsMeasurement(strings.Repeat("ab", 32)), bootrecord.ReleaseMeasurement("1.0.0")}
	for _, m := range plumbLog {
		d, _ := hex.DecodeString(m.SHA256)
		if err := tpm2.PCRExtend(tpm, 15, tpm2.AlgSHA256, d, ""); err != nil {
			t.Fatal(err)
		}
	}
	logPath := filepath.Join(t.TempDir(), "measurements.json")
	b, _ := json.Marshal(plumbLog)
	os.WriteFile(logPath, b, 0o644)
	dev, err := attest.NewDevice(tpm, t.TempDir(), attest.WithDeviceID(a.id.ID),
		attest.WithEventLog(filepath.Join(t.TempDir(), "none")), attest.WithPlumbLog(logPath))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	ch, err := c.Enroll(ctx, dev.EnrollmentRequest())
	if err != nil {
		t.Fatal(err)
	}
	secret, err := dev.ActivateCredential(ch.Credential, ch.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Activate(ctx, &attestapi.Activation{DeviceID: a.id.ID, Secret: secret}); err != nil {
		t.Fatal(err)
	}
	n, err := c.Nonce(ctx, a.id.ID)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := dev.Evidence(ctx, n.Nonce, attestapi.Release{Version: "1.0.0", Hardware: "qemu-x86_64", RootfsSHA256: f1.Rootfs.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	rep, _, err := c.Evidence(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, chk := range rep.Checks {
		if chk.Name == attest.CheckRootfs {
			pf.rootfs = chk
		}
	}
	if rep.Verdict != attest.VerdictFailed || pf.rootfs.Status != attest.StatusFailed || pf.rootfs.Expected == "" || pf.rootfs.Actual == "" {
		t.Fatalf("attestation: verdict %s, rootfs check %+v; want failed with expected and actual values", rep.Verdict, pf.rootfs)
	}

	// Tenant B, its device and its operator.
	orgB, err := fs.db.CreateOrg(ctx, "tenantb", 0)
	if err != nil {
		t.Fatal(err)
	}
	joinB, err := fs.db.CreateJoinToken(ctx, orgB.ID, "b")
	if err != nil {
		t.Fatal(err)
	}
	bd := fs.device(joinB)
	pf.b = bd.id.ID
	report(bd, map[string]any{"release": rel("1.0.0"), "update": map[string]any{"phase": "idle"}}, nil)

	def, err := fs.db.OrgByName(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	pf.user("olivia", def.ID, store.RoleOperator)
	pf.user("victor", def.ID, store.RoleViewer)
	pf.user("bob", orgB.ID, store.RoleOperator)
	return pf
}

func (pf *pageFleet) user(name, org, role string) {
	pf.t.Helper()
	pw := "pw-" + name + "-0123456789"
	hash, err := HashPassword(pw)
	if err != nil {
		pf.t.Fatal(err)
	}
	u, err := pf.db.CreateUser(context.Background(), name, hash)
	if err != nil {
		pf.t.Fatal(err)
	}
	if err := pf.db.SetRole(context.Background(), u.ID, org, role); err != nil {
		pf.t.Fatal(err)
	}
	pf.users[name] = pw
}

// session logs in through the API with a cookie jar, for forged requests.
func (pf *pageFleet) session(name string) (*http.Client, string) {
	pf.t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := *pf.hs.Client()
	hc.Jar = jar
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	code, body := pf.do(&hc, http.MethodPost, "/v1/login", map[string]string{"user": name, "password": pf.users[name]}, "Content-Type", "application/json")
	if code != http.StatusOK {
		pf.t.Fatalf("login %s: %d %s", name, code, body)
	}
	var out struct {
		CSRF string `json:"csrf"`
	}
	json.Unmarshal([]byte(body), &out)
	return &hc, out.CSRF
}

// metadata reads a role's metadata: name, or its newest N.name.
func (pf *pageFleet) metadata(name string) []byte {
	pf.t.Helper()
	dir := filepath.Join(pf.repoDir, "repository", "metadata")
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		ms, _ := filepath.Glob(filepath.Join(dir, "*."+name))
		best := -1
		for _, m := range ms {
			if n, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(m), "."+name)); err == nil && n > best {
				best, p = n, m
			}
		}
	}
	b, err := os.ReadFile(p)
	if err != nil {
		pf.t.Fatal(err)
	}
	return b
}

// TestPage drives the operator page in headless Chromium against the
// fleet service over HTTPS and checks what it shows and refuses:
// the overview's counts and problems, the device page's timeline (install,
// update, commit, rollback with its reason), the failed attestation check
// with its expected and actual values side by side, the workloads, the
// device list's filters, the release page's stages and SVG adoption curve,
// pause from the page (re-signed timestamp/snapshot/targets, root
// untouched, an audit row), a viewer's page without buttons, forged POSTs
// without or with a wrong CSRF token, and tenant isolation. On SQLite and
// on a real PostgreSQL.
func TestPage(t *testing.T) {
	if testing.Short() {
		t.Skip("drives headless Chromium and manufactures a TPM with swtpm_setup: not in -short")
	}
	eachDB(t, testPage)
}

func testPage(t *testing.T, dsn string) {
	pf := newPageFleet(t, dsn)
	base := pf.hs.URL
	br := testutil.Chromium(t)
	shots := t.TempDir()

	// Not logged in: every page sends to the login form.
	if code := br.Open(base + "/ui/o/default/devices/" + pf.a); code != http.StatusOK || !br.Exists(`[data-test="login-form"]`) {
		t.Errorf("device page without a session: HTTP %d, login form %v; want the login form", code, br.Exists(`[data-test="login-form"]`))
	}
	// A wrong password: the form again, with one line and 401.
	br.Open(base + "/ui/login")
	if code := br.Submit(map[string]string{`input[name="user"]`: "olivia", `input[name="password"]`: "wrong"}, `[data-test="login-submit"]`); code != http.StatusUnauthorized {
		t.Errorf("wrong password: HTTP %d, want 401", code)
	}
	if got := br.Text(`[data-test="error"]`); got != "login: wrong user name or password" {
		t.Errorf("wrong password: error %q", got)
	}

	// The operator of "default".
	br.Login(base, "olivia", pf.users["olivia"])
	if got := br.Text(`[data-test="title"]`); got != "Overview" {
		t.Fatalf("after login: page %q, want the overview", got)
	}
	if got := br.Text(`[data-test="count-total"]`); got != "2" {
		t.Errorf("overview: %s devices, want 2 (tenant B's is not counted)", got)
	}
	count := func(table, key string) string {
		return br.Text(`table[data-test="by-` + table + `"] tr[data-key="` + key + `"] td.n`)
	}
	if count("version", "1.1.0") != "1" || count("version", "1.0.0") != "1" || count("hardware", "qemu-x86_64") != "2" ||
		count("verdict", "failed") != "1" || count("lifecycle", "running") != "2" {
		t.Errorf("overview counts: version 1.1.0=%q 1.0.0=%q, hardware=%q, verdict failed=%q, running=%q; want 1 1 2 1 2",
			count("version", "1.1.0"), count("version", "1.0.0"), count("hardware", "qemu-x86_64"), count("verdict", "failed"), count("lifecycle", "running"))
	}
	if !br.Exists(`[data-test="problem"][data-kind="rollback"][data-device="`+pf.r+`"]`) ||
		!br.Exists(`[data-test="problem"][data-kind="attestation"][data-device="`+pf.a+`"]`) {
		t.Errorf("problems: %q; want R's rollback and A's failed attestation", br.Texts(`[data-test="problem"]`))
	}
	br.Screenshot(filepath.Join(shots, "overview.png"))

	// Device A: timeline from the install through the update, the failed
	// attestation side by side, the workloads.
	if code := br.Open(base + "/ui/o/default/devices/" + pf.a); code != http.StatusOK {
		t.Fatalf("device page: HTTP %d: %s", code, br.Text("main"))
	}
	kinds, err := testutil.Eval[[]string](br, `Array.from(document.querySelectorAll('[data-test="timeline-event"]')).map(e => e.dataset.kind)`)
	if err != nil {
		t.Fatal(err)
	}
	// In this order, with others (workload changes, more updates) between.
	want, got := []string{"joined", "install", "install", "update", "committed", "update", "rolled_back", "attestation"}, kinds
	for _, k := range want {
		i := slices.Index(got, k)
		if i < 0 {
			t.Errorf("timeline kinds: %q, want %q in this order", kinds, want)
			break
		}
		got = got[i+1:]
	}
	if got := br.Text(`[data-test="timeline-event"][data-kind="rolled_back"] [data-test="rollback-reason"]`); got != pf.reasonA {
		t.Errorf("A's rollback reason: %q, want %q", got, pf.reasonA)
	}
	if s := br.Texts(`[data-test="timeline-event"][data-kind="attestation"] [data-test="event-summary"]`); len(s) == 0 || !strings.Contains(s[len(s)-1], "attestation failed: rootfs") {
		t.Errorf("timeline's last attestation: %q, want it failed on rootfs", s)
	}
	if got := br.Attr(`[data-test="attestation"]`, "data-verdict"); got != "failed" {
		t.Errorf("attestation verdict on the page: %q, want failed", got)
	}
	row := `[data-test="check"][data-check="rootfs"]`
	if br.Attr(row, "data-status") != "failed" || br.Text(row+` [data-test="check-expected"]`) != pf.rootfs.Expected ||
		!strings.HasPrefix(br.Text(row+` [data-test="check-actual"]`), pf.rootfs.Actual) {
		t.Errorf("rootfs check: status %q, expected %q, actual %q; want failed, %q, %q", br.Attr(row, "data-status"),
			br.Text(row+` [data-test="check-expected"]`), br.Text(row+` [data-test="check-actual"]`), pf.rootfs.Expected, pf.rootfs.Actual)
	}
	if br.Text(`[data-test="workload"][data-name="db"] [data-test="workload-state"]`) != "exited" {
		t.Errorf("workloads: %q, want db exited", br.Texts(`[data-test="workload"]`))
	}
	br.Screenshot(filepath.Join(shots, "device.png"))

	// Device R: the rollback and its reason, escaped as text.
	br.Open(base + "/ui/o/default/devices/" + pf.r)
	if got := br.Text(`[data-test="timeline-event"][data-kind="rolled_back"] [data-test="rollback-reason"]`); got != pf.reason {
		t.Errorf("rollback reason on the page: %q, want %q", got, pf.reason)
	}
	if br.Exists(`script`) {
		t.Errorf("device data became markup: a <script> element is on the page")
	}
	br.Screenshot(filepath.Join(shots, "device-rollback.png"))
	if *testutil.Update {
		b, err := os.ReadFile(filepath.Join(shots, "device.png"))
		if err == nil {
			err = os.WriteFile(filepath.Join(testutil.RepoRoot(t), "docs", "fleet-page-device.png"), b, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	// The device list: filters and search.
	br.Open(base + "/ui/o/default/devices?verdict=failed")
	if got := br.Texts(`[data-test="device-row"] [data-test="device-link"]`); len(got) != 1 || got[0] != pf.a {
		t.Errorf("devices with verdict failed: %q, want [%s]", got, pf.a)
	}
	br.Open(base + "/ui/o/default/devices?version=1.0.0")
	if got := br.Texts(`[data-test="device-link"]`); len(got) != 1 || got[0] != pf.r {
		t.Errorf("devices on 1.0.0: %q, want [%s]", got, pf.r)
	}
	br.Open(base + "/ui/o/default/devices?limit=1")
	if br.Count(`[data-test="device-row"]`) != 1 || !br.Exists(`[data-test="next-page"]`) {
		t.Errorf("a page of 1: %d rows, next link %v", br.Count(`[data-test="device-row"]`), br.Exists(`[data-test="next-page"]`))
	}

	// The release page: stages, the adoption curve, and pause.
	relURL := base + "/ui/o/default/releases/qemu-x86_64/1.1.0"
	if code := br.Open(relURL); code != http.StatusOK {
		t.Fatalf("release page: HTTP %d: %s", code, br.Text("main"))
	}
	stage := func(s string) string { return br.Text(`[data-test="stage"][data-stage="` + s + `"] td.n`) }
	if stage("running") != "1" || stage("committed") != "1" || stage("failed") != "1" {
		t.Errorf("stages: running %s, committed %s, failed %s; want 1 1 1", stage("running"), stage("committed"), stage("failed"))
	}
	if n := br.Count(`svg[data-test="adoption-chart"] circle[data-test="adoption-point"]`); n != 1 {
		t.Errorf("adoption chart: %d points, want 1 (A committed 1.1.0)", n)
	}
	rootBefore, tsBefore, targetsBefore := pf.metadata("root.json"), pf.metadata("timestamp.json"), pf.metadata("targets.json")
	if code := br.Submit(nil, `[data-test="pause-button"]`); code != http.StatusOK {
		t.Fatalf("pause: HTTP %d: %s", code, br.Text("main"))
	}
	if got := br.Text(`[data-test="rollout-state"]`); got != "paused" {
		t.Errorf("after pause: state %q, want paused", got)
	}
	if bytes.Equal(pf.metadata("timestamp.json"), tsBefore) || bytes.Equal(pf.metadata("targets.json"), targetsBefore) {
		t.Errorf("pause did not re-sign timestamp and targets")
	}
	if !bytes.Equal(pf.metadata("root.json"), rootBefore) {
		t.Errorf("pause changed root.json")
	}
	br.Screenshot(filepath.Join(shots, "release.png"))
	br.Open(base + "/ui/o/default/audit")
	if got := br.Text(`[data-test="audit-row"][data-action="rollout.pause"] [data-test="audit-actor"]`); got != "user olivia" {
		t.Errorf("audit log: pause by %q, want user olivia; rows %q", got, br.Texts(`[data-test="audit-row"]`))
	}

	// Halt with a reason, and waves for a group, from the page's forms.
	br.Open(relURL)
	if code := br.Submit(map[string]string{`form[data-test="rollout-halt"] input[name="reason"]`: "too many rollbacks on line 2"}, `[data-test="halt-button"]`); code != http.StatusOK {
		t.Fatalf("halt: HTTP %d: %s", code, br.Text("main"))
	}
	if got := br.Text(`[data-test="rollout-state"]`); got != "halted: too many rollbacks on line 2" {
		t.Errorf("after halt: state %q", got)
	}
	if code := br.Submit(map[string]string{`form[data-test="rollout-waves"] input[name="group"]`: "canary",
		`form[data-test="rollout-waves"] input[name="waves"]`: "10%@now 50%@+24h"}, `[data-test="waves-button"]`); code != http.StatusOK {
		t.Fatalf("waves: HTTP %d: %s", code, br.Text("main"))
	}
	var canary []string
	for _, w := range br.Texts(`[data-test="wave"]`) {
		if p, ok := strings.CutPrefix(w, "canary\t"); ok {
			canary = append(canary, strings.Fields(p)[0])
		}
	}
	if strings.Join(canary, " ") != "10% 50%" {
		t.Errorf("canary waves after set: %q, want 10%% then 50%%", canary)
	}
	if code := br.Submit(map[string]string{`form[data-test="rollout-waves"] input[name="waves"]`: "lots@never"}, `[data-test="waves-button"]`); code != http.StatusBadRequest ||
		!strings.Contains(br.Text(`[data-test="error"]`), `wave "lots@never": expected P%@WHEN`) {
		t.Errorf("bad waves: HTTP %d %q; want 400 naming the wave", code, br.Text(`[data-test="error"]`))
	}
	br.Open(base + "/ui/o/default/audit")
	for _, a := range []string{"rollout.halt", "rollout.set"} {
		if !br.Exists(`[data-test="audit-row"][data-action="` + a + `"]`) {
			t.Errorf("audit log lacks %s", a)
		}
	}

	// Forged POSTs: the operator's own session, without the CSRF token or
	// with a wrong one, is refused and changes nothing.
	hc, csrf := pf.session("olivia")
	ts := pf.metadata("timestamp.json")
	for _, form := range []url.Values{{}, {"csrf": {"csrf-forged"}}} {
		code, body := pf.do(hc, http.MethodPost, "/ui/o/default/releases/qemu-x86_64/1.1.0/resume", form.Encode(), "Content-Type", "application/x-www-form-urlencoded")
		if code != http.StatusForbidden || !strings.Contains(body, "CSRF") {
			t.Errorf("resume with csrf %q: %d %.200s; want 403 naming CSRF", form.Get("csrf"), code, body)
		}
	}
	if !bytes.Equal(pf.metadata("timestamp.json"), ts) {
		t.Errorf("a forged POST changed timestamp.json")
	}
	// With the token it works (the page's form is not the only way in).
	code, _ := pf.do(hc, http.MethodPost, "/ui/o/default/releases/qemu-x86_64/1.1.0/resume", url.Values{"csrf": {csrf}}.Encode(), "Content-Type", "application/x-www-form-urlencoded")
	if code != http.StatusSeeOther || bytes.Equal(pf.metadata("timestamp.json"), ts) {
		t.Errorf("resume with the session's CSRF token: %d, timestamp changed %v; want 303 and a new timestamp", code, !bytes.Equal(pf.metadata("timestamp.json"), ts))
	}

	// A viewer: the page has no buttons, and a POST with its own valid
	// CSRF token is refused for its role.
	br.Login(base, "victor", pf.users["victor"])
	br.Open(relURL)
	if br.Exists(`[data-test="pause-button"]`) || !br.Exists(`[data-test="viewer-note"]`) {
		t.Errorf("viewer: pause button %v, note %v; want no button", br.Exists(`[data-test="pause-button"]`), br.Exists(`[data-test="viewer-note"]`))
	}
	vc, vcsrf := pf.session("victor")
	ts = pf.metadata("timestamp.json")
	if code, body := pf.do(vc, http.MethodPost, "/ui/o/default/releases/qemu-x86_64/1.1.0/pause", url.Values{"csrf": {vcsrf}}.Encode(), "Content-Type", "application/x-www-form-urlencoded"); code != http.StatusForbidden || !strings.Contains(body, "operator role") {
		t.Errorf("viewer pause: %d %.200s; want 403 naming the operator role", code, body)
	}
	if !bytes.Equal(pf.metadata("timestamp.json"), ts) {
		t.Errorf("a viewer's POST changed timestamp.json")
	}

	// Tenant B's operator: its own device only.
	br.Login(base, "bob", pf.users["bob"])
	br.Open(base + "/ui/o/tenantb/devices")
	if got := br.Texts(`[data-test="device-link"]`); len(got) != 1 || got[0] != pf.b {
		t.Errorf("tenant B's list: %q, want only [%s]", got, pf.b)
	}
	if code := br.Open(base + "/ui/o/tenantb/devices/" + pf.a); code != http.StatusNotFound || strings.Contains(br.Text("main"), "1.1.0") {
		t.Errorf("tenant B opening A's device in its org: HTTP %d; want 404 and nothing of A", code)
	}
	if code := br.Open(base + "/ui/o/default/devices/" + pf.a); code != http.StatusForbidden {
		t.Errorf("tenant B opening A's device in default: HTTP %d; want 403", code)
	}
	if got := br.Text(`[data-test="error"]`); !strings.Contains(got, "not one of its operators") {
		t.Errorf("tenant B's refusal: %q", got)
	}
	// Once default grants tenant B the provisioning phase of its devices,
	// B sees A's installation, and nothing of A's OS phase: no release,
	// no update, no rollback, no attestation (as the API's redact).
	def, _ := pf.db.OrgByName(t.Context(), "default")
	orgB, _ := pf.db.OrgByName(t.Context(), "tenantb")
	if err := pf.db.AddGrant(t.Context(), store.Grant{Owner: def.ID, Grantee: orgB.ID, Phase: store.PhaseProvisioning}); err != nil {
		t.Fatal(err)
	}
	if code := br.Open(base + "/ui/o/tenantb/devices/" + pf.a); code != http.StatusOK {
		t.Fatalf("granted device page: HTTP %d: %s", code, br.Text("main"))
	}
	kinds, err = testutil.Eval[[]string](br, `Array.from(document.querySelectorAll('[data-test="timeline-event"]')).map(e => e.dataset.kind)`)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kinds {
		if k != "joined" && k != "install" {
			t.Errorf("provisioning grant: timeline shows a %s event", k)
		}
	}
	if len(kinds) < 3 || br.Exists(`[data-test="attestation"]`) || br.Exists(`[data-test="version"]`) || br.Exists(`[data-test="workloads"]`) || strings.Contains(br.Text("main"), pf.reasonA) {
		t.Errorf("provisioning grant: kinds %q, attestation %v, version %v; want the install only", kinds, br.Exists(`[data-test="attestation"]`), br.Exists(`[data-test="version"]`))
	}

	// Nor may it pause the release every tenant's devices get, though it
	// sees the release (its device runs 1.0.0) and is an operator.
	if code := br.Open(base + "/ui/o/tenantb/releases/qemu-x86_64/1.0.0"); code != http.StatusOK || br.Exists(`[data-test="pause-button"]`) {
		t.Errorf("tenant B's release page: HTTP %d, pause button %v; want 200 and no button", code, br.Exists(`[data-test="pause-button"]`))
	}
	bc, bcsrf := pf.session("bob")
	ts = pf.metadata("timestamp.json")
	if code, body := pf.do(bc, http.MethodPost, "/ui/o/tenantb/releases/qemu-x86_64/1.0.0/pause", url.Values{"csrf": {bcsrf}}.Encode(), "Content-Type", "application/x-www-form-urlencoded"); code != http.StatusForbidden || !strings.Contains(body, "only operators of default") {
		t.Errorf("tenant B pausing: %d %.200s; want 403", code, body)
	}
	if !bytes.Equal(pf.metadata("timestamp.json"), ts) {
		t.Errorf("tenant B's POST changed timestamp.json")
	}
}

// TestPageErrors checks the page's answers without a browser: every error
// is a page with one line and its status, a GET without a session goes to
// the login form, device data is escaped in the HTML, no script may run
// (CSP), and the repository's paths still serve files.
func TestPageErrors(t *testing.T) {
	// Every device is silent after 1 ns: the overview must list it.
	fs := newFleetServer(t, "", FleetOptions{SilentAfter: time.Nanosecond}, nil, "")
	viewer := fs.token("default", "viewer")
	d := fs.device(fs.join)
	evil := `<script>alert("x")</script><img src=x onerror=alert(1)>`
	if code, b := fs.post(d, d.id.ID, statusBody(d, map[string]any{"release": map[string]any{"version": "1.0.0", "hardware": evil},
		"update": map[string]any{"phase": "idle", "event": "rolled back from 1.1.0: " + evil}}, nil)); code != http.StatusNoContent {
		t.Fatalf("report: %d %s", code, b)
	}
	noRedirect := *fs.hs.Client()
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	get := func(method, path, body string, hdr ...string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, fs.hs.URL+path, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, resp.Header, b.String()
	}
	auth := []string{"Authorization", "Bearer " + viewer}
	form := []string{"Authorization", "Bearer " + viewer, "Content-Type", "application/x-www-form-urlencoded"}
	errLine := func(html string) string {
		_, rest, ok := strings.Cut(html, `data-test="error"`)
		if !ok {
			return ""
		}
		_, rest, _ = strings.Cut(rest, ">")
		line, _, _ := strings.Cut(rest, "</p>")
		return line
	}
	for _, c := range []struct {
		method, path, body string
		hdr                []string
		code               int
		want               string // in the error line
	}{
		{"GET", "/ui/o/default/devices?limit=abc", "", auth, 400, "limit: expected a number"},
		{"GET", "/ui/o/default/devices?limit=5000", "", auth, 400, "limit: expected 1 to 1000"},
		{"GET", "/ui/o/default/devices?q=" + strings.Repeat("a", 200), "", auth, 400, "q: expected at most 128 characters"},
		{"GET", "/ui/o/default/devices/nosuchdevice", "", auth, 404, "no such device in default"},
		{"GET", "/ui/o/nosuchorg/", "", auth, 403, "not one of its operators"},
		{"GET", "/ui/o/default/nopage", "", auth, 404, "no page"},
		{"GET", "/ui/nowhere", "", auth, 404, "no page"},
		{"DELETE", "/ui/o/default/", "", auth, 405, "method DELETE not allowed"},
		{"GET", "/ui/o/default/releases/qemu-x86_64/9.9.9", "", auth, 404, "release qemu-x86_64/9.9.9"},
		{"POST", "/ui/o/default/releases/qemu-x86_64/1.0.0/pause", "csrf=x", form, 403, "needs the operator role"},
		{"POST", "/ui/o/default/releases/qemu-x86_64/1.0.0/pause", "csrf=" + strings.Repeat("x", 20<<10), form, 400, "form: expected an urlencoded form of at most"},
		{"POST", "/ui/login", "user=a&password=b&csrf=c", []string{"Content-Type", "application/x-www-form-urlencoded"}, 403, "CSRF token does not match"},
		{"POST", "/ui/logout", "csrf=c", []string{"Content-Type", "application/x-www-form-urlencoded"}, 401, "no session cookie"},
	} {
		code, h, body := get(c.method, c.path, c.body, c.hdr...)
		line := errLine(body)
		if code != c.code || !strings.Contains(line, c.want) || strings.Contains(line, "\n") {
			t.Errorf("%s %.60s: %d %q; want %d and one line with %q", c.method, c.path, code, line, c.code, c.want)
		}
		if !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("%s %.60s: Content-Type %q, CSP %q", c.method, c.path, h.Get("Content-Type"), h.Get("Content-Security-Policy"))
		}
	}

	// No session: the login form.
	if code, h, _ := get("GET", "/ui/o/default/devices", ""); code != http.StatusSeeOther || h.Get("Location") != "/ui/login" {
		t.Errorf("no session: %d to %q, want 303 to /ui/login", code, h.Get("Location"))
	}
	// Device data is text, never markup, on every page that shows it.
	for _, p := range []string{"/ui/o/default/devices/" + d.id.ID, "/ui/o/default/devices", "/ui/o/default/"} {
		code, _, body := get("GET", p, "", auth...)
		if code != http.StatusOK || strings.Contains(body, "<script>") || strings.Contains(body, "<img") || !strings.Contains(body, "&lt;script&gt;") {
			t.Errorf("GET %s: %d; want 200 with the device's text escaped:\n%.2000s", p, code, body)
		}
	}
	if _, _, body := get("GET", "/ui/o/default/", "", auth...); !strings.Contains(body, `data-kind="silent" data-device="`+d.id.ID+`"`) {
		t.Errorf("overview: device %s not listed as silent:\n%.3000s", d.id.ID, body)
	}
	// A device without a join credential is pending: admins see it on
	// the overview, viewers do not (GET /v1/orgs/ORG/pending is admin's).
	stranger := fs.device("")
	if code, _ := fs.post(stranger, stranger.id.ID, statusBody(stranger, map[string]any{}, nil)); code != http.StatusForbidden {
		t.Fatalf("device without a join token: %d, want 403", code)
	}
	pending := `data-kind="pending" data-device="` + stranger.id.ID + `"`
	if _, _, body := get("GET", "/ui/o/default/", "", "Authorization", "Bearer "+fs.token("default", "admin")); !strings.Contains(body, pending) {
		t.Errorf("admin's overview does not list the pending device")
	}
	if _, _, body := get("GET", "/ui/o/default/", "", auth...); strings.Contains(body, pending) {
		t.Errorf("a viewer's overview lists a pending device")
	}
	// The repository is still served beside the page.
	if code, _, _ := get("GET", "/metadata/timestamp.json", ""); code != http.StatusOK {
		t.Errorf("GET /metadata/timestamp.json with the page on: %d, want 200", code)
	}
}
