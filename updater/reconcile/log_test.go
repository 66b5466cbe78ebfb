package reconcile

import (
	"log/slog"
	"testing"
)

type tw struct{ t testing.TB }

func (w tw) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tw{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
