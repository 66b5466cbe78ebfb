package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/internal/testutil"
	"github.com/plumb-os/plumb/server"
	"github.com/plumb-os/plumb/server/store"
	"github.com/plumb-os/plumb/testvm"
)

// -fleet-docs DIR copies TestFleetLifecycleVM's screenshot of the device
// page after the rollback to DIR/fleet-page-rollback.png, as committed
// under docs/. Every screenshot is kept in the test's artifact directory
// (go test -artifacts) and its path logged.
var fleetDocs = flag.String("fleet-docs", "", "directory to write TestFleetLifecycleVM's device page screenshot to")

// TestFleetLifecycleVM is issue 12's acceptance VM test: one device's whole
// life, as the fleet service shows it to an operator. It also carries what
// TestInstallVM, TestUpdate, TestRollbackHealthCheck and TestAttestation
// checked, so that their boots are not paid twice.
//
//  1. Phase 1: a VM with an empty disk boots the installer's kernel and
//     initramfs directly (QEMU -kernel/-initrd under OVMF, as network boot
//     would), installs the newest published release (1.0.0, not 0.9.0)
//     over HTTPS, joining the organization "acme" with the join token built
//     into the installer, and reboots. QEMU's -kernel would boot the
//     installer again, so that run has -no-reboot and the test starts the
//     VM again without -kernel (same disk, OVMF vars and TPM state), as a
//     machine whose network boot is over.
//  2. It boots from its disk, commits 1.0.0 under the TPM-derived id the
//     installer showed, and its attestation passes. 2.0.0 is published
//     (attested commit): slot b, measured boot matches, committed, passed.
//  3. Power cycle: 2.0.0 committed on slot b, 1.0.0's entry kept as the
//     fallback, a file written on the data partition before is still there.
//     3.0.0 is published with a health check that fails: tried once on slot
//     a, rolled back to 2.0.0 with the reason.
//  4. Power cycle with slot b's kernel on the ESP tampered with: plumbd
//     status still tells the rollback, and the verdict flips to failed,
//     on the kernel check alone, expected and actual side by side.
//
// The operator's view is checked through the real page in headless
// Chromium (a viewer of acme logged in) twice: after the rollback (the
// install, both commits and the rollback with its reason in the timeline,
// the verdict passed) and after the tampered boot (the verdict failed, the
// kernel check's expected and actual values side by side, the problem list);
// and through the API with acme's token. Screenshots are kept (see
// -fleet-docs).
func TestFleetLifecycleVM(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Minute) // about 6 min on a quiet 2-core machine
	defer cancel()
	f := newFleet(t, ctx, "qemu-lifecycle")
	op := f.newOrg("acme", "line-2 installer")
	const health = "  health:\n    - command: \"test -e /etc/no-such-file\"\n      timeout: 5s\n"
	v0, v1 := f.build("0.9.0", "", ""), f.build("1.0.0", "", "")
	v2, v3 := f.build("2.0.0", "", attested), f.build("3.0.0", "", attested+health)
	f.publish(v0)
	f.publish(v1)
	man2, err := builder.ReadManifest(filepath.Join(v2, builder.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}

	// 1. The installer.
	d := &device{t: t, f: f, dir: filepath.Join(f.work, "vm-device"), disk: filepath.Join(f.work, "vm-device", "disk.img")}
	os.MkdirAll(d.dir, 0o755)
	blankDisk(t, d.disk, 1<<30)
	if d.man, err = builder.ReadManifest(filepath.Join(v1, builder.ManifestFile)); err != nil {
		t.Fatal(err)
	}
	cmdline := "console=ttyS0 panic=5 loglevel=4 plumb.disk=auto"
	vm, err := testvm.Start(ctx, d.dir, testvm.WithDisk(d.disk), testvm.WithTPM(), testvm.WithGuestForward(443, f.port),
		testvm.WithKernel(filepath.Join(v1, builder.KernelFile), filepath.Join(v1, builder.InstallerInitrdFile), cmdline),
		testvm.WithNoReboot())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	d.vm = vm
	powerOn := vm.Started()
	id := d.waitFor(0, `plumb-install: device (\S+) \(TPM key\)`)[1]
	d.waitFor(0, `plumb-install: 1\.0\.0 installed on /dev/vda: rebooting`)
	vm.Wait() // -no-reboot: QEMU exits at the reboot
	installed := time.Since(powerOn)
	// The installer reported its progress under the device id: done.
	if rep := f.lastReport(id); !regexp.MustCompile(`"install":\{"phase":"done","version":"1\.0\.0"`).MatchString(rep) {
		t.Errorf("installer's last report of device %s = %s; want install phase done", id, rep)
	}
	for _, line := range strings.Split(vm.Console(), "\n") {
		if strings.HasPrefix(line, "plumb-install") {
			t.Log(strings.TrimSpace(line))
		}
	}
	vm.Close()
	d.writeData("canary", []byte("written after the install, before the update\n"))

	// 2. First boot from the disk, and the update to 2.0.0.
	vm = d.powerOn()
	d.waitFor(0, `root found" device=/dev/vda2`)
	d.waitFor(0, `plumb: status \{.*"version":"1\.0\.0".*"slot":"a".*"device":\{"id":"`+id+`"`)
	d.waitFor(0, `release committed" version=1\.0\.0 slot=a`)
	t.Logf("power-on to committed: %.1fs (installer power-on to its reboot %.1fs; QEMU restarted without -kernel in between)",
		time.Since(powerOn).Seconds(), installed.Seconds())
	line := d.waitFor(0, `attestation verdict" verdict=(\S+) failed=(\S*) release=1\.0\.0 device=(\S+)`)
	if line[1] != "passed" || line[3] != id {
		t.Errorf("after the first boot: verdict %s, failed %q, device %s; want passed, device %s\n%s", line[1], line[2], line[3], id, f.reportFile(line[3]))
	}
	// The server has the device's report under the same id: committed.
	f.eventually(60*time.Second, func() error {
		if rep := f.lastReport(id); !regexp.MustCompile(`"update":\{"phase":"committed","version":"1\.0\.0"`).MatchString(rep) {
			return fmt.Errorf("server's report of device %s = %s; want release 1.0.0 committed", id, rep)
		}
		return nil
	})

	mark := vm.Mark()
	published := time.Now()
	f.publish(v2)
	d.waitFor(mark, `plumbd \S+ started: .*version=2\.0\.0 slot=b`)
	d.waitFor(mark, `measured boot matches the release's reference values" version=2\.0\.0`)
	d.waitFor(mark, `release committed" version=2\.0\.0`)
	line = d.waitFor(mark, `attestation verdict" verdict=(\S+) failed=(\S*) release=2\.0\.0 device=(\S+)`)
	t.Logf("publish to attested commit and verdict: %.1fs", time.Since(published).Seconds())
	st := f.srv.Stats()
	t.Logf("server: %d requests, %d answered 304, %d bytes sent", st.Requests, st.NotModified, st.BytesOut)
	vm.Close()
	if line[1] != "passed" || line[3] != id {
		t.Errorf("after the update: verdict %s, failed %q, device %s; want passed, device %s", line[1], line[2], line[3], id)
	}
	r := f.report(id)
	if r.Verdict != attest.VerdictPassed || r.Release != "2.0.0" || len(r.Checks) != 15 {
		t.Errorf("kept report: verdict %s, release %s, %d checks; want passed, 2.0.0, 15", r.Verdict, r.Release, len(r.Checks))
	}
	for _, c := range r.Checks {
		if c.Status != attest.StatusPassed {
			t.Errorf("after the update: check %s %s: %s", c.Name, c.Status, c.Detail)
		}
	}
	if c := r.Check(attest.CheckKernel); c == nil || c.Expected != man2.Measured.Kernel {
		t.Errorf("kernel check %+v: want the published %s", c, man2.Measured.Kernel)
	}
	f.keepReport(id, "attestation-report")
	// The installer's trial entry was committed at the first boot, and
	// stays as the fallback next to 2.0.0.
	entries := d.entries()
	for _, want := range []string{"plumb-2.0.0.conf", "plumb-1.0.0.conf"} {
		if !strings.Contains(entries, want+"\n") {
			t.Errorf("ESP entries %q lack %s", entries, want)
		}
	}
	if got := d.readData("canary"); got != "written after the install, before the update\n" {
		t.Errorf("canary on the data partition after the update = %q", got)
	}

	// 3. Power on again: 2.0.0 committed on slot b. Then a release whose
	// health check fails.
	vm = d.powerOn()
	d.waitFor(0, `plumb: status \{.*"version":"2\.0\.0".*"slot":"b".*"update":\{"phase":"committed".*"event":"committed 2\.0\.0"`)
	d.waitFor(0, `plumbd \S+ started: .*version=2\.0\.0 slot=b`)
	// Every boot attests: this one, of an untampered release, passes too.
	line = d.waitFor(0, `attestation verdict" verdict=(\S+) failed=(\S*) release=2\.0\.0 device=(\S+)`)
	if line[1] != "passed" {
		t.Errorf("after the power cycle: verdict %s, failed %q; want passed\n%s", line[1], line[2], f.reportFile(id))
	}
	mark = vm.Mark()
	published = time.Now()
	f.publish(v3)
	d.waitFor(mark, `plumbd \S+ started: .*version=3\.0\.0 slot=a`)
	d.waitFor(mark, `trial failed, rebooting into the previous slot" version=3\.0\.0`)
	d.waitFor(mark, `rolled back" from=3\.0\.0 to=2\.0\.0 reason="health check command test -e /etc/no-such-file`)
	t.Logf("rolled back %.1fs after publishing", time.Since(published).Seconds())
	// The boot back into 2.0.0 attests as every boot does (the one before
	// the publish was waited for before mark, so this is the rollback's).
	// Waiting for it keeps the power on until its verdict is in the
	// history that the page checks after the tamper.
	line = d.waitFor(mark, `attestation verdict" verdict=(\S+) failed=(\S*) release=2\.0\.0 device=(\S+)`)
	if line[1] != "passed" {
		t.Errorf("after the rollback: verdict %s, failed %q; want passed\n%s", line[1], line[2], f.reportFile(id))
	}
	if n := strings.Count(vm.Console(), "version=3.0.0 slot=a tpm="); n != 1 {
		t.Errorf("3.0.0 booted %d times, want once (its entry is marked out of tries)", n)
	}
	// Its report reaches the server before the power goes.
	f.eventually(60*time.Second, func() error {
		if rep := f.lastReport(id); !strings.Contains(rep, `"event":"rolled back from 3.0.0: health check command test -e /etc/no-such-file`) {
			return fmt.Errorf("server's report of device %s = %s; want the rollback from 3.0.0", id, rep)
		}
		return nil
	})
	vm.Close()
	if entries := d.entries(); strings.Contains(entries, "plumb-3.0.0") {
		t.Errorf("ESP still holds 3.0.0's entry: %q", entries)
	}
	page := op.browse(id)
	page.afterRollback()

	// 4. Slot b's kernel is tampered with on the ESP.
	d.tamperKernel("b")
	vm = d.powerOn()
	d.waitFor(0, `plumb: status \{.*"version":"2\.0\.0".*"slot":"b".*"event":"rolled back from 3\.0\.0: health check command test -e /etc/no-such-file`)
	line = d.waitFor(0, `attestation verdict" verdict=(\S+) failed=(\S*) release=2\.0\.0 device=(\S+)`)
	if line[1] != "failed" || line[2] != "kernel" || line[3] != id {
		t.Errorf("tampered kernel: verdict %s, failed checks %q, device %s; want failed, kernel, %s", line[1], line[2], line[3], id)
	}
	r = f.report(id)
	kernel := r.Check(attest.CheckKernel)
	if kernel == nil || kernel.Status != attest.StatusFailed || kernel.Expected != man2.Measured.Kernel || kernel.Actual == "" || kernel.Actual == kernel.Expected {
		t.Fatalf("tampered kernel: kernel check %+v, want failed with expected %s", kernel, man2.Measured.Kernel)
	}
	f.keepReport(id, "attestation-report-tampered-kernel")

	// The operator's view, while the device runs.
	op.checkLifecycle(id, kernel)
	page.afterTamper(kernel)
	vm.Close()
}

// eventually calls check every second until it returns nil or the time is
// up; then the test fails with check's last error.
func (f *fleet) eventually(limit time.Duration, check func() error) {
	f.t.Helper()
	var err error
	for end := time.Now().Add(limit); ; time.Sleep(time.Second) {
		if err = check(); err == nil || time.Now().After(end) || f.ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		f.t.Fatalf("after %s: %v", limit, err)
	}
}

// operator is a script of one organization: an API token with the viewer
// role, used over HTTPS as plumb fleet uses it (docs/api.md).
type operator struct {
	f     *fleet
	org   string
	token string
	c     *http.Client
}

// newOrg makes an organization and a join token, which the fleet's later
// builds carry (their installer and agent join with it), and returns a
// viewer of that organization.
func (f *fleet) newOrg(name, joinName string) *operator {
	f.t.Helper()
	st := f.srv.Store()
	org, err := st.CreateOrg(f.ctx, name, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	join, err := st.CreateJoinToken(f.ctx, org.ID, joinName)
	if err != nil {
		f.t.Fatal(err)
	}
	f.join = filepath.Join(f.work, name+".join-token")
	if err := os.WriteFile(f.join, []byte(join+"\n"), 0o600); err != nil {
		f.t.Fatal(err)
	}
	_, secret, err := st.CreateToken(f.ctx, org.ID, "e2e viewer", store.RoleViewer, time.Hour)
	if err != nil {
		f.t.Fatal(err)
	}
	pem, err := os.ReadFile(f.srv.CACertPath())
	if err != nil {
		f.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		f.t.Fatalf("no certificate in %s", f.srv.CACertPath())
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	f.t.Cleanup(tr.CloseIdleConnections)
	return &operator{f: f, org: name, token: secret, c: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// get reads path (under /v1/orgs/ORG/) into v; it returns the status and
// an error for anything but 200.
func (o *operator) get(path string, v any) (int, error) {
	req, err := http.NewRequestWithContext(o.f.ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/v1/orgs/%s/%s", o.f.port, o.org, path), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+o.token)
	resp, err := o.c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, fmt.Errorf("GET %s: %s: %s", req.URL.Path, resp.Status, e.Error)
	}
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
}

// checkLifecycle checks what the API shows of the device after the test's
// story: installed by the installer with acme's join token, 1.0.0 and
// 2.0.0 committed, 3.0.0 rolled back with its reason, the verdict failed
// on the kernel with the values the device's report holds.
func (o *operator) checkLifecycle(id string, kernel *attest.Check) {
	t := o.f.t
	t.Helper()
	const reason = healthReason
	var dev store.Device
	var events struct{ Events []store.Event }
	o.f.eventually(60*time.Second, func() error {
		if _, err := o.get("devices/"+id, &dev); err != nil {
			return err
		}
		if dev.Version != "2.0.0" || dev.Verdict != attest.VerdictFailed || dev.Lifecycle != "running" || dev.Hardware != o.f.hardware ||
			!strings.HasPrefix(dev.LastEvent, "rolled back from 3.0.0: "+reason) {
			return fmt.Errorf("device %s: version %q, verdict %q, lifecycle %q, hardware %q, last event %q; want 2.0.0, failed, running, %s, the rollback from 3.0.0",
				id, dev.Version, dev.Verdict, dev.Lifecycle, dev.Hardware, dev.LastEvent, o.f.hardware)
		}
		return nil
	})
	if dev.JoinedBy != "join token line-2 installer" {
		t.Errorf("device %s joined by %q; want acme's join token line-2 installer", id, dev.JoinedBy)
	}
	if _, err := o.get("devices/"+id+"/events", &events); err != nil {
		t.Fatal(err)
	}
	var timeline []string
	for _, e := range events.Events {
		timeline = append(timeline, e.Kind+" "+e.Version+" "+e.Summary)
	}
	t.Logf("the device's history, as the API shows it:\n%s", strings.Join(timeline, "\n"))
	// In this order, among the others.
	want := []struct{ kind, version, summary string }{
		{store.EventJoined, "", "joined with join token line-2 installer"},
		{store.EventInstall, "1.0.0", "install: done"},
		{store.EventCommitted, "1.0.0", "committed 1.0.0"},
		{store.EventAttestation, "1.0.0", "attestation passed"},
		{store.EventCommitted, "2.0.0", "committed 2.0.0"},
		{store.EventAttestation, "2.0.0", "attestation passed"},
		{store.EventRolledBack, "3.0.0", "rolled back from 3.0.0: " + reason},
		{store.EventAttestation, "2.0.0", "attestation failed: kernel"},
	}
	i := 0
	for _, e := range events.Events {
		if i < len(want) && e.Kind == want[i].kind && e.Version == want[i].version && strings.HasPrefix(e.Summary, want[i].summary) {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("device history lacks %+v (after the ones before it)", want[i])
	}
	// Every verdict before the tampered boot passed; the last failed.
	var verdict store.Event
	for _, e := range events.Events {
		if e.Kind != store.EventAttestation || e.Summary == "attestation key enrolled" {
			continue
		}
		if verdict.Summary != "" && verdict.Summary != "attestation passed" {
			t.Errorf("an untampered boot's verdict: %s %q; want passed. Its report:\n%s", verdict.Version, verdict.Summary, verdict.Detail)
		}
		verdict = e
	}
	if verdict.Summary != "attestation failed: kernel" || verdict.Version != "2.0.0" {
		t.Errorf("last verdict in the history: %+v; want 2.0.0's, failed on the kernel", verdict)
	}

	var rep attest.Report
	if _, err := o.get("devices/"+id+"/attestation", &rep); err != nil {
		t.Fatal(err)
	}
	if c := rep.Check(attest.CheckKernel); rep.Verdict != attest.VerdictFailed || c == nil || c.Expected != kernel.Expected || c.Actual != kernel.Actual {
		t.Errorf("API attestation report: verdict %s, kernel check %+v; want failed, expected %s, actual %s", rep.Verdict, c, kernel.Expected, kernel.Actual)
	}
	var rels struct{ Releases []store.ReleaseCount }
	if _, err := o.get("releases", &rels); err != nil {
		t.Fatal(err)
	}
	failed := map[string]int64{}
	for _, r := range rels.Releases {
		failed[r.Version] = r.Failed
	}
	if failed["3.0.0"] != 1 || failed["2.0.0"] != 0 || failed["1.0.0"] != 0 {
		t.Errorf("releases: %+v; want 3.0.0 failed on 1 device, 1.0.0 and 2.0.0 on none", rels.Releases)
	}

	// It joined acme by its token, not the fleet's default organization.
	def := *o
	def.org = "default"
	if code, err := def.get("devices/"+id, &dev); code != http.StatusForbidden && code != http.StatusNotFound {
		t.Errorf("acme's token reading the default organization: %d, %v; want 403 or 404", code, err)
	}
	if d, err := o.f.srv.Store().Device(o.f.ctx, id); err != nil || d.OrgID == "" {
		t.Errorf("device %s in the store: %+v, %v", id, d, err)
	} else if org, err := o.f.srv.Store().OrgByID(o.f.ctx, d.OrgID); err != nil || org.Name != "acme" {
		t.Errorf("device %s belongs to %+v (%v); want acme", id, org, err)
	}
}

// devicePage is an operator's browser on one device's page.
type devicePage struct {
	o   *operator
	b   *testutil.Browser
	id  string
	url string
}

// browse starts headless Chromium, makes a viewer of the operator's
// organization with a password and logs in on the page.
func (o *operator) browse(id string) *devicePage {
	t := o.f.t
	t.Helper()
	st := o.f.srv.Store()
	org, err := st.OrgByName(o.f.ctx, o.org)
	if err != nil {
		t.Fatal(err)
	}
	const user, password = "olga", "olga-reads-the-fleet"
	hash, err := server.HashPassword(password)
	if err != nil {
		t.Fatal(err)
	}
	u, err := st.CreateUser(o.f.ctx, user, hash)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetRole(o.f.ctx, u.ID, org.ID, store.RoleViewer); err != nil {
		t.Fatal(err)
	}
	b := testutil.Chromium(t)
	base := fmt.Sprintf("https://127.0.0.1:%d", o.f.port)
	b.Login(base, user, password)
	return &devicePage{o: o, b: b, id: id, url: base + "/ui/o/" + o.org + "/devices/" + id}
}

// open loads the device page afresh.
func (p *devicePage) open() {
	p.o.f.t.Helper()
	if code := p.b.Open(p.url); code != http.StatusOK {
		p.o.f.t.Fatalf("GET %s: HTTP %d: %s", p.url, code, p.b.Text(`[data-test="error"]`))
	}
}

// screenshot keeps the page as name in the test's artifact directory and
// logs the path; it returns the path.
func (p *devicePage) screenshot(name string) string {
	t := p.o.f.t
	t.Helper()
	path := filepath.Join(t.ArtifactDir(), name)
	p.b.Screenshot(path)
	t.Logf("screenshot: %s", path)
	return path
}

// timeline is the device page's timeline, one "KIND VERSION SUMMARY [reason]"
// line per event, oldest first.
func (p *devicePage) timeline() []string {
	p.o.f.t.Helper()
	lines, err := testutil.Eval[[]string](p.b, `Array.from(document.querySelectorAll('[data-test="timeline-event"]')).map(e => {
		const s = e.querySelector('[data-test="event-summary"]'), r = e.querySelector('[data-test="rollback-reason"]');
		return [e.dataset.kind, e.dataset.version, s ? s.innerText.trim() : "", r ? "[" + r.innerText.trim() + "]" : ""].join(" ");
	})`)
	if err != nil {
		p.o.f.t.Fatalf("reading the timeline: %v", err)
	}
	return lines
}

// inOrder checks that the timeline holds lines starting with each of want,
// in that order (other events may come between).
func inOrder(t *testing.T, timeline []string, want ...string) {
	t.Helper()
	i := 0
	for _, l := range timeline {
		if i < len(want) && strings.HasPrefix(l, want[i]) {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("the page's timeline lacks %q (after the ones before it):\n%s", want[i], strings.Join(timeline, "\n"))
	}
}

const healthReason = "health check command test -e /etc/no-such-file"

// afterRollback checks the page once 3.0.0 was rolled back, before the
// kernel is tampered with; its screenshot is the one for docs/.
func (p *devicePage) afterRollback() {
	t := p.o.f.t
	t.Helper()
	p.open()
	b := p.b
	if got := b.Text(`[data-test="device-id"]`); got != p.id {
		t.Errorf("device page: id %q, want %s", got, p.id)
	}
	if got := b.Text(`[data-test="device-facts"]`); !strings.Contains(got, "by join token line-2 installer") || !strings.Contains(got, p.o.f.hardware) {
		t.Errorf("device page facts:\n%s\nwant it joined by acme's join token line-2 installer, hardware %s", got, p.o.f.hardware)
	}
	if got := b.Text(`[data-test="version"]`); got != "2.0.0" {
		t.Errorf("device page: version %q, want 2.0.0", got)
	}
	if got := b.Text(`[data-test="last-event"]`); !strings.HasPrefix(got, "rolled back from 3.0.0: "+healthReason) {
		t.Errorf("device page: last event %q, want the rollback from 3.0.0", got)
	}
	if got := b.Text(`[data-test="verdict"]`); got != attest.VerdictPassed {
		t.Errorf("device page after the rollback: verdict %q, want passed", got)
	}
	tl := p.timeline()
	t.Logf("the device page's timeline after the rollback:\n%s", strings.Join(tl, "\n"))
	inOrder(t, tl,
		"joined  joined with join token line-2 installer",
		"install 1.0.0 install: done",
		"committed 1.0.0 committed 1.0.0",
		"attestation 1.0.0 attestation passed",
		"committed 2.0.0 committed 2.0.0",
		"attestation 2.0.0 attestation passed",
		"rolled_back 3.0.0 rolled back from 3.0.0: "+healthReason)
	if got := b.Text(`[data-test="timeline-event"][data-kind="rolled_back"][data-version="3.0.0"] [data-test="rollback-reason"]`); !strings.HasPrefix(got, healthReason) {
		t.Errorf("rollback reason on the page = %q, want %q…", got, healthReason)
	}
	shot := p.screenshot("device-after-rollback.png")
	if *fleetDocs != "" {
		data, err := os.ReadFile(shot)
		if err == nil {
			err = os.WriteFile(filepath.Join(*fleetDocs, "fleet-page-rollback.png"), data, 0o644)
		}
		if err != nil {
			t.Error(err)
		}
	}
}

// afterTamper checks the page once the tampered kernel was attested:
// the verdict flipped, the kernel check's values as the report has them,
// every other check passed, and the overview's problem list.
func (p *devicePage) afterTamper(kernel *attest.Check) {
	t := p.o.f.t
	t.Helper()
	p.open()
	b := p.b
	if got := b.Text(`[data-test="verdict"]`); got != attest.VerdictFailed {
		t.Errorf("device page after the tampered boot: verdict %q, want failed", got)
	}
	if got := b.Attr(`section[data-test="attestation"]`, "data-verdict"); got != attest.VerdictFailed {
		t.Errorf("attestation section: data-verdict %q, want failed", got)
	}
	row := `[data-test="check"][data-check="` + attest.CheckKernel + `"] `
	if got := b.Text(row + `[data-test="check-status"]`); got != attest.StatusFailed {
		t.Errorf("kernel check status on the page %q, want failed", got)
	}
	if got := b.Text(row + `[data-test="check-expected"]`); got != kernel.Expected {
		t.Errorf("kernel check: the page's expected %q, want %s", got, kernel.Expected)
	}
	if got := b.Text(row + `[data-test="check-actual"]`); !strings.HasPrefix(got, kernel.Actual) {
		t.Errorf("kernel check: the page's actual %q, want %s", got, kernel.Actual)
	}
	failed, err := testutil.Eval[[]string](b, `Array.from(document.querySelectorAll('[data-test="check"]')).filter(e => e.dataset.status !== "passed").map(e => e.dataset.check + " " + e.dataset.status)`)
	if err != nil {
		t.Fatal(err)
	}
	if n := b.Count(`[data-test="check"]`); n != 15 || len(failed) != 1 || failed[0] != attest.CheckKernel+" failed" {
		t.Errorf("the page shows %d checks, not passed: %q; want 15, only the kernel failed", n, failed)
	}
	tl := p.timeline()
	inOrder(t, tl,
		"rolled_back 3.0.0 rolled back from 3.0.0: "+healthReason,
		"attestation 2.0.0 attestation passed",
		"attestation 2.0.0 attestation failed: kernel")
	p.screenshot("device-tampered-kernel.png")

	// The overview lists both problems of the device.
	overview := strings.TrimSuffix(p.url, "devices/"+p.id)
	if code := b.Open(overview); code != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d", overview, code)
	}
	for _, kind := range []string{"rollback", "attestation"} {
		if !b.Exists(`[data-test="problem"][data-kind="` + kind + `"][data-device="` + p.id + `"]`) {
			t.Errorf("overview: no %s problem for device %s; problems: %q", kind, p.id, b.Texts(`[data-test="problem"]`))
		}
	}
	p.screenshot("overview.png")
}
