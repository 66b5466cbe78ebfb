package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestSharedState: nonces, challenges and TLS ticket keys live in the
// database with their caps; each nonce and challenge is taken once.
func TestSharedState(t *testing.T) {
	eachDB(t, Options{}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		now := time.Now()
		exp := now.Add(time.Minute)
		for i := range 5 {
			if err := s.AddNonce(ctx, "dev-a", []byte{byte(i)}, now.Add(time.Duration(i)*time.Millisecond), exp, 4, 6); err != nil {
				t.Fatal(err)
			}
		}
		if n, _ := s.Nonces(ctx, "dev-a", now); n != 4 {
			t.Errorf("dev-a has %d nonces, want 4 (its oldest dropped)", n)
		}
		if ok, _ := s.TakeNonce(ctx, "dev-a", []byte{0}, now); ok {
			t.Error("dev-a's oldest nonce was taken after it was dropped")
		}
		if err := s.AddNonce(ctx, "dev-b", []byte{9}, now, exp, 4, 6); err != nil {
			t.Fatal(err)
		}
		if err := s.AddNonce(ctx, "dev-c", []byte{9}, now, exp, 4, 5); !errors.Is(err, ErrFull) {
			t.Errorf("a nonce past the cap of 5 in all: %v, want ErrFull", err)
		}
		if ok, err := s.TakeNonce(ctx, "dev-a", []byte{4}, now); !ok || err != nil {
			t.Errorf("take dev-a's newest nonce: %v %v", ok, err)
		}
		if ok, _ := s.TakeNonce(ctx, "dev-a", []byte{4}, now); ok {
			t.Error("a nonce was taken twice")
		}
		if ok, _ := s.TakeNonce(ctx, "dev-b", []byte{9}, exp.Add(time.Second)); ok {
			t.Error("an expired nonce was taken")
		}

		if err := s.PutChallenge(ctx, "dev-a", `{"x":1}`, "", now, exp, 1); err != nil {
			t.Fatal(err)
		}
		if err := s.PutChallenge(ctx, "dev-a", `{"x":2}`, "org", now, exp, 1); err != nil {
			t.Errorf("replacing dev-a's challenge at the cap: %v", err)
		}
		if err := s.PutChallenge(ctx, "dev-b", `{}`, "", now, exp, 1); !errors.Is(err, ErrFull) {
			t.Errorf("another device's challenge past the cap: %v, want ErrFull", err)
		}
		if c, org, err := s.TakeChallenge(ctx, "dev-a", now); err != nil || c != `{"x":2}` || org != "org" {
			t.Errorf("take dev-a's challenge: %q %q %v", c, org, err)
		}
		if _, _, err := s.TakeChallenge(ctx, "dev-a", now); !errors.Is(err, ErrNotFound) {
			t.Errorf("a challenge taken twice: %v, want ErrNotFound", err)
		}

		k1, err := s.TicketKeys(ctx, now, time.Hour, 3*time.Hour)
		if err != nil || len(k1) != 1 {
			t.Fatalf("first ticket keys: %d %v", len(k1), err)
		}
		if k, _ := s.TicketKeys(ctx, now.Add(time.Minute), time.Hour, 3*time.Hour); len(k) != 1 || k[0] != k1[0] {
			t.Errorf("ticket keys a minute later: %d keys, same %v; want the same one", len(k), len(k) > 0 && k[0] == k1[0])
		}
		k2, _ := s.TicketKeys(ctx, now.Add(2*time.Hour), time.Hour, 3*time.Hour)
		if len(k2) != 2 || k2[1] != k1[0] || k2[0] == k1[0] {
			t.Errorf("after rotation: %d keys; want a new one first, the old one second", len(k2))
		}
		// At +4h the first is past its lifetime, the second due for
		// rotation.
		if k, _ := s.TicketKeys(ctx, now.Add(4*time.Hour), time.Hour, 3*time.Hour); len(k) != 2 || k[1] != k2[0] || k[0] == k1[0] || k[1] == k1[0] {
			t.Errorf("after the first key's lifetime: %d keys; want a new one and the second", len(k))
		}
	})
}
