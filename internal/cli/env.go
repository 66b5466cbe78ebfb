package cli

import (
	"io"
	"log/slog"
)

// Env is what every verb gets besides its options: output streams and the
// logger.
type Env struct {
	Stdout, Stderr io.Writer
	Log            *slog.Logger
}

// NewLogger is plumb's logger: warnings, or everything with verbose.
func NewLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// NewDeviceLogger is plumbd's logger: the agent's log is the device's
// record, so info by default.
func NewDeviceLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
