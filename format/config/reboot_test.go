package config

import (
	"testing"
	"time"
)

func TestParseReboot(t *testing.T) {
	good := map[string]RebootPolicy{
		"":            {Mode: RebootNow},
		"now":         {Mode: RebootNow},
		"manual":      {Mode: RebootManual},
		"02:00-04:30": {Mode: "window", Start: 120, End: 270},
		"23:00-01:00": {Mode: "window", Start: 1380, End: 60},
	}
	for in, want := range good {
		if got, err := ParseReboot(in); err != nil || got != want {
			t.Errorf("ParseReboot(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"later", "2:00-4:00", "02:00-02:00", "25:00-01:00", "02:60-03:00", "02:00-04:00x", "02:00"} {
		if _, err := ParseReboot(in); err == nil {
			t.Errorf("ParseReboot(%q) succeeded, want an error", in)
		}
	}
}

func TestRebootWait(t *testing.T) {
	at := func(h, m int) time.Time { return time.Date(2026, 11, 26, h, m, 0, 0, time.UTC) }
	win, _ := ParseReboot("02:00-04:00")
	wrap, _ := ParseReboot("23:00-01:00")
	tests := []struct {
		p    RebootPolicy
		now  time.Time
		want time.Duration
	}{
		{RebootPolicy{Mode: RebootNow}, at(12, 0), 0},
		{RebootPolicy{Mode: RebootManual}, at(12, 0), -1},
		{win, at(3, 0), 0},
		{win, at(1, 30), 30 * time.Minute},
		{win, at(4, 0), 22 * time.Hour},
		{wrap, at(23, 30), 0},
		{wrap, at(0, 30), 0},
		{wrap, at(22, 0), time.Hour},
	}
	for _, tt := range tests {
		if got := tt.p.Wait(tt.now); got != tt.want {
			t.Errorf("%+v.Wait(%s) = %s, want %s", tt.p, tt.now.Format("15:04"), got, tt.want)
		}
	}
}
