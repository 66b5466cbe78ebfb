package agent

// Host-level tests of updates by delta bundle (issue 5), on the rig of
// integration_test.go: real releases, a real TUF repository with deltas
// made by tufrepo.Publish, served over HTTPS by plumb serve's server, the
// real fetch client and slot device (slots are plain files).

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/updater/fetch"
)

var v2Delta = release.DeltaPath(hardware, v2, v1)

// publishDeltas publishes release v with deltas from the older releases.
func (r *rig) publishDeltas(t *testing.T, v string) {
	t.Helper()
	repo, err := tufrepo.Open(r.repoDir, r.repoOpts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Publish(t.Context(), r.rel[v].dir, tufrepo.PublishOptions{Deltas: tufrepo.DefaultDeltas}); err != nil {
		t.Fatalf("publishing %s: %v", v, err)
	}
}

// deltaFile is the file serving the delta target from v1 to v2.
func (r *rig) deltaFile(t *testing.T) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(r.repoDir, "repository", "targets", hardware, v2, "*.from-"+v1+".delta"))
	if err != nil || len(m) != 1 {
		t.Fatalf("delta files of %s: %v (err %v), want one", v2, m, err)
	}
	return m[0]
}

// logTo makes a's log go to a buffer the test reads.
func logTo(a *Agent) *bytes.Buffer {
	var b bytes.Buffer
	a.Log = slog.New(slog.NewTextHandler(&b, nil))
	return &b
}

// TestDeltaUpdate: v2 is published with a delta from v1; the device
// running v1 downloads only the bundle (the server sends about its bytes),
// applies it from slot a into slot b, boots v2 on trial and commits.
func TestDeltaUpdate(t *testing.T) {
	r := newRig(t, tufrepo.Options{})
	a := r.agent(t, "a", v1, nil)
	logs := logTo(a)
	if err := a.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.publishDeltas(t, v2)
	fi, err := os.Stat(r.deltaFile(t))
	if err != nil {
		t.Fatal(err)
	}
	deltaLen := fi.Size()
	full := int64(len(readFile(t, r.rel[v2].file(builder.RootfsFile))))
	before := r.srv.Stats().BytesOut
	start := time.Now()
	installV2(t, r, a)
	secs := time.Since(start).Seconds()
	sent := r.srv.Stats().BytesOut - before
	t.Logf("delta %d bytes, full image %d bytes, server sent %d bytes (metadata included) in %.2fs", deltaLen, full, sent, secs)
	if sent > deltaLen+deltaLen/20+64<<10 {
		t.Errorf("server sent %d bytes for a %d-byte delta, want about the delta (+ metadata)", sent, deltaLen)
	}
	if sent >= full/2 {
		t.Errorf("server sent %d bytes, want far less than the %d-byte full image", sent, full)
	}
	st := r.state(t)
	if st.Method != MethodDelta || st.Fetched != deltaLen || st.Fallback != "" {
		t.Errorf("state = method %q, fetched %d, fallback %q; want delta, %d, none", st.Method, st.Fetched, st.Fallback, deltaLen)
	}
	if !strings.Contains(logs.String(), `msg="slot written from delta and verified"`) {
		t.Errorf("log lacks the delta install:\n%s", logs)
	}
	if _, err := os.Stat(filepath.Join(r.dataDir, "update.delta")); !os.IsNotExist(err) {
		t.Errorf("bundle file left on the data partition (stat err %v)", err)
	}

	bootTrial(t, r, "plumb-2.0.0+2-1.conf")
	b := r.agent(t, "b", v2, nil)
	if err := b.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := r.state(t); st.Phase != PhaseCommitted || st.Method != MethodDelta {
		t.Errorf("state after the trial boot = %+v, want committed, by delta", st)
	}
}

// TestDeltaFallback: whatever is wrong with the delta, the device logs one
// line with the reason, installs the full image instead and ends on v2.
func TestDeltaFallback(t *testing.T) {
	tests := []struct {
		name     string
		sabotage func(t *testing.T, r *rig)
		reason   string // regexp of the logged reason
	}{
		{
			name: "corrupted delta",
			sabotage: func(t *testing.T, r *rig) {
				p := r.deltaFile(t)
				b := readFile(t, p)
				b[len(b)/2] ^= 0x55
				writeFile(t, p, b)
			},
			reason: `delta test/2\.0\.0/from-1\.0\.0\.delta: target test/2\.0\.0/from-1\.0\.0\.delta: sha256 mismatch: expected [0-9a-f]{64}, got [0-9a-f]{64}`,
		},
		{
			name: "truncated delta",
			sabotage: func(t *testing.T, r *rig) {
				p := r.deltaFile(t)
				b := readFile(t, p)
				writeFile(t, p, b[:len(b)*2/3])
			},
			reason: `delta test/2\.0\.0/from-1\.0\.0\.delta: target test/2\.0\.0/from-1\.0\.0\.delta: giving up after 2 attempts`,
		},
		{
			// The running slot is not the image the delta was made from
			// (the facts say it is: its bytes differ).
			name: "wrong base",
			sabotage: func(t *testing.T, r *rig) {
				f, err := os.OpenFile(r.slots["a"].Device, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if _, err := f.WriteAt([]byte("bit rot"), 4096); err != nil {
					t.Fatal(err)
				}
				r.sumA = sumFile(t, r.slots["a"].Device, -1)
			},
			reason: `delta test/2\.0\.0/from-1\.0\.0\.delta: delta: the old image is not this bundle's base: expected sha256 [0-9a-f]{64}, got [0-9a-f]{64}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tufrepo.Options{})
			r.link = fetch.Link{Attempts: 2, RetryBase: 10 * time.Millisecond}
			a := r.agent(t, "a", v1, nil)
			logs := logTo(a)
			if err := a.Settle(t.Context()); err != nil {
				t.Fatal(err)
			}
			r.publishDeltas(t, v2)
			tt.sabotage(t, r)
			installV2(t, r, a)

			var lines []string
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "delta not used") {
					lines = append(lines, l)
				}
			}
			re := regexp.MustCompile(`level=WARN msg="delta not used, installing the full image" .*reason="` + tt.reason)
			if len(lines) != 1 || !re.MatchString(lines[0]) {
				t.Errorf("fallback log lines %q, want one matching %q", lines, re)
			} else {
				t.Logf("logged: %s", lines[0])
			}
			st := r.state(t)
			if st.Method != MethodFull || !regexp.MustCompile(tt.reason).MatchString(st.Fallback) {
				t.Errorf("state method %q, fallback %q; want full and the reason", st.Method, st.Fallback)
			}
			full := int64(len(readFile(t, r.rel[v2].file(builder.RootfsFile))))
			if st.Fetched < full {
				t.Errorf("state fetched %d, want at least the full image's %d", st.Fetched, full)
			}
			if _, err := os.Stat(filepath.Join(r.dataDir, "update.delta")); !os.IsNotExist(err) {
				t.Errorf("bundle file left on the data partition (stat err %v)", err)
			}
		})
	}
}

// TestDeltaResume: power was lost after the bundle was downloaded, while
// it was being applied: the restarted agent re-hashes the bundle on the
// data partition instead of fetching it again, and applies it.
func TestDeltaResume(t *testing.T) {
	r := newRig(t, tufrepo.Options{})
	r.publishDeltas(t, v2)
	bundle := readFile(t, r.deltaFile(t))
	writeFile(t, filepath.Join(r.dataDir, "update.delta"), bundle)
	// Half of slot b written from it when the power went.
	half := readFile(t, r.rel[v2].file(builder.RootfsFile))
	f, err := os.OpenFile(r.slots["b"].Device, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(half[:len(half)/2], 0)
	f.Close()
	st := &State{Phase: PhaseApplying, Version: v2, Target: v2Delta, Slot: "b", Bytes: int64(len(half) / 2), Total: int64(len(half)),
		Method: MethodDelta, Fetched: int64(len(bundle))}
	if err := st.Save(filepath.Join(r.dataDir, stateFile)); err != nil {
		t.Fatal(err)
	}
	a := r.agent(t, "a", v1, nil)
	if err := a.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := r.state(t); got.Phase != PhaseApplying {
		t.Fatalf("state after Settle = %+v, want the apply kept", got)
	}
	// The server no longer has the bundle: fetching it would fail and
	// fall back to the full image.
	if err := os.Remove(r.deltaFile(t)); err != nil {
		t.Fatal(err)
	}
	installV2(t, r, a)
	if got := r.state(t); got.Method != MethodDelta || got.Fetched != int64(len(bundle)) {
		t.Errorf("state method %q, fetched %d; want delta, %d", got.Method, got.Fetched, len(bundle))
	}
}

// TestRoomFor: a bundle larger than the free space of the data partition
// is refused before its download (and the update falls back to the full
// image); one that fits is not.
func TestRoomFor(t *testing.T) {
	p := filepath.Join(t.TempDir(), "update.delta")
	if err := roomFor(p, 1); err != nil {
		t.Errorf("roomFor(1 byte) = %v, want nil", err)
	}
	err := roomFor(p, 1<<60)
	if err == nil || !regexp.MustCompile(`: \d+ bytes free for a bundle of 1152921504606846976$`).MatchString(err.Error()) {
		t.Errorf("roomFor(1 EiB) = %v, want the free space named", err)
	}
}
