package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/plumb-os/plumb/internal/testutil"
)

// eachDB runs f on a fresh SQLite file and on a fresh real PostgreSQL.
func eachDB(t *testing.T, o Options, f func(t *testing.T, s *Store)) {
	t.Run("sqlite", func(t *testing.T) {
		s, err := Open(context.Background(), filepath.Join(t.TempDir(), "fleet.db"), o)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		f(t, s)
	})
	t.Run("postgres", func(t *testing.T) {
		pg := testutil.Postgres(t)
		s, err := Open(context.Background(), pg.DSN, o)
		if err != nil {
			t.Fatalf("%v\n%s", err, pg.Log())
		}
		defer s.Close()
		f(t, s)
	})
}

func mustOrg(t *testing.T, s *Store, name string, max int64) *Org {
	t.Helper()
	o, err := s.CreateOrg(context.Background(), name, max)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func mustDevice(t *testing.T, s *Store, org, id string) {
	t.Helper()
	if err := s.AddDevice(context.Background(), &Device{ID: id, OrgID: org, PublicKey: []byte("key-" + id), JoinedBy: "test"}); err != nil {
		t.Fatal(err)
	}
}

func TestStore(t *testing.T) {
	eachDB(t, Options{MaxEvents: 5}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		acme := mustOrg(t, s, "acme", 2)
		if _, err := s.CreateOrg(ctx, "acme", 0); !errors.Is(err, ErrExists) {
			t.Errorf("second org acme: %v, want ErrExists", err)
		}
		tok, err := s.CreateJoinToken(ctx, acme.ID, "factory")
		if err != nil {
			t.Fatal(err)
		}
		if org, name, err := s.JoinTokenOrg(ctx, tok); err != nil || org != acme.ID || name != "factory" {
			t.Errorf("JoinTokenOrg = %q, %v", org, err)
		}
		if _, _, err := s.JoinTokenOrg(ctx, tok+"x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("wrong token: %v", err)
		}

		// The organization's cap holds.
		mustDevice(t, s, acme.ID, "dev1")
		mustDevice(t, s, acme.ID, "dev2")
		if err := s.AddDevice(ctx, &Device{ID: "dev3", OrgID: acme.ID, PublicKey: []byte("k"), JoinedBy: "test"}); !errors.Is(err, ErrFull) {
			t.Errorf("third device of a 2-device org: %v, want ErrFull", err)
		}
		if err := s.AddDevice(ctx, &Device{ID: "dev1", OrgID: acme.ID, PublicKey: []byte("k"), JoinedBy: "test"}); err == nil {
			t.Errorf("dev1 added twice")
		}

		// History is bounded per device, and the report is kept.
		for i := range 8 {
			r := &Report{At: time.Now(), Body: []byte(fmt.Sprintf(`{"n":%d}`, i)), Hardware: "qemu", Version: "1.0.0",
				Events: []Event{{At: time.Now(), Kind: EventUpdate, Version: "2.0.0", Summary: fmt.Sprint("step ", i)}}}
			if err := s.RecordReport(ctx, "dev1", r); err != nil {
				t.Fatal(err)
			}
		}
		evs, err := s.Events(ctx, "dev1", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 5 || evs[0].Seq != 4 || evs[4].Summary != "step 7" {
			t.Errorf("history after 8 events, max 5: %+v", evs)
		}
		d, err := s.Device(ctx, "dev1")
		if err != nil || string(d.Report) != `{"n":7}` || d.Version != "1.0.0" {
			t.Errorf("Device = %+v, %v", d, err)
		}
		if err := s.RecordReport(ctx, "nope", &Report{At: time.Now()}); !errors.Is(err, ErrNotFound) {
			t.Errorf("report of an unknown device: %v", err)
		}

		// Release outcomes: failed stays failed.
		out := func(id, o string) {
			if err := s.RecordReport(ctx, id, &Report{At: time.Now(), Outcomes: []Outcome{{Hardware: "qemu", Version: "2.0.0", Outcome: o}}}); err != nil {
				t.Fatal(err)
			}
		}
		out("dev1", OutcomeTrying)
		out("dev1", OutcomeFailed)
		out("dev1", OutcomeTrying)
		out("dev2", OutcomeCommitted)
		if tried, failed, err := s.ReleaseOutcomes(ctx, "qemu", "2.0.0"); err != nil || tried != 2 || failed != 1 {
			t.Errorf("ReleaseOutcomes = %d, %d, %v; want 2, 1", tried, failed, err)
		}

		// Attestation.
		if err := s.SaveEnrollment(ctx, "dev1", []byte("ek"), []byte("ak"), time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordAttestation(ctx, "dev1", "1.0.0", "failed", "kernel", []byte(`{"verdict":"failed"}`), time.Now()); err != nil {
			t.Fatal(err)
		}
		if b, err := s.LatestAttestation(ctx, "dev1"); err != nil || string(b) != `{"verdict":"failed"}` {
			t.Errorf("LatestAttestation = %s, %v", b, err)
		}

		// Retention: history older than the cut is pruned.
		if n, err := s.PruneEvents(ctx, time.Now().Add(time.Hour)); err != nil || n == 0 {
			t.Errorf("PruneEvents = %d, %v", n, err)
		}
		if evs, _ := s.Events(ctx, "dev1", 0, 0); len(evs) != 0 {
			t.Errorf("history after pruning everything: %d entries", len(evs))
		}

		// Pending devices are capped.
		if err := s.RecordPending(ctx, Pending{ID: "p1", PublicKey: []byte("k"), Reason: "no join token", Remote: "x"}, 1); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordPending(ctx, Pending{ID: "p1", PublicKey: []byte("k"), Reason: "no join token", Remote: "x"}, 1); err != nil {
			t.Errorf("the same pending device again: %v", err)
		}
		if err := s.RecordPending(ctx, Pending{ID: "p2", PublicKey: []byte("k"), Reason: "no join token", Remote: "x"}, 1); !errors.Is(err, ErrFull) {
			t.Errorf("second pending device past a cap of 1: %v", err)
		}
		if ps, _ := s.PendingDevices(ctx, 0); len(ps) != 1 || ps[0].Attempts != 2 {
			t.Errorf("pending = %+v", ps)
		}
	})
}

func TestStoreTenants(t *testing.T) {
	eachDB(t, Options{}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		owner, prov, other := mustOrg(t, s, "owner", 0), mustOrg(t, s, "provisioner", 0), mustOrg(t, s, "other", 0)
		mustDevice(t, s, owner.ID, "a1")
		mustDevice(t, s, owner.ID, "a2")
		mustDevice(t, s, other.ID, "o1")
		if err := s.SetGroups(ctx, "a2", []string{"line-2"}); err != nil {
			t.Fatal(err)
		}
		if err := s.AddGrant(ctx, Grant{Owner: owner.ID, Grantee: prov.ID, Phase: PhaseProvisioning, Group: "line-2"}); err != nil {
			t.Fatal(err)
		}
		ids := func(org string) string {
			ds, err := s.Devices(ctx, DeviceQuery{Org: org})
			if err != nil {
				t.Fatal(err)
			}
			out := ""
			for _, d := range ds {
				out += fmt.Sprintf("%s%v ", d.ID, d.Phases)
			}
			return out
		}
		if got := ids(owner.ID); got != "a1[provisioning os apps] a2[provisioning os apps] " {
			t.Errorf("owner sees %q", got)
		}
		if got := ids(prov.ID); got != "a2[provisioning] " {
			t.Errorf("provisioner sees %q", got)
		}
		if got := ids(other.ID); got != "o1[provisioning os apps] " {
			t.Errorf("other sees %q", got)
		}
		if _, err := s.DeviceFor(ctx, other.ID, "a1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("other reading a1: %v, want ErrNotFound", err)
		}
		if _, err := s.DeviceFor(ctx, prov.ID, "a1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("provisioner reading a1 (not in its group): %v", err)
		}

		// Operators, sessions, tokens, audit.
		u, err := s.CreateUser(ctx, "alice", "hash")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SetRole(ctx, u.ID, owner.ID, RoleAdmin); err != nil {
			t.Fatal(err)
		}
		if r, _ := s.Role(ctx, u.ID, other.ID); r != "" {
			t.Errorf("alice's role in other = %q", r)
		}
		sid, csrf, err := s.CreateSession(ctx, u.ID, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if se, err := s.SessionByID(ctx, sid); err != nil || se.CSRF != csrf || se.UserID != u.ID {
			t.Errorf("session = %+v, %v", se, err)
		}
		tk, secret, err := s.CreateToken(ctx, owner.ID, "ci", RoleViewer, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := s.TokenBySecret(ctx, secret); err != nil || got.ID != tk.ID {
			t.Errorf("token = %+v, %v", got, err)
		}
		if err := s.RevokeToken(ctx, owner.ID, tk.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.TokenBySecret(ctx, secret); !errors.Is(err, ErrNotFound) {
			t.Errorf("revoked token: %v", err)
		}
		if err := s.Audit(ctx, AuditEntry{OrgID: owner.ID, Actor: "user alice", Action: "token.revoke", Target: tk.ID}); err != nil {
			t.Fatal(err)
		}
		if log, _ := s.AuditLog(ctx, owner.ID, 0); len(log) != 1 || log[0].Action != "token.revoke" {
			t.Errorf("audit = %+v", log)
		}
		if log, _ := s.AuditLog(ctx, other.ID, 0); len(log) != 0 {
			t.Errorf("other's audit = %+v", log)
		}
	})
}
