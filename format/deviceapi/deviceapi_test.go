package deviceapi

import (
	"encoding/json"
	"os"
	"testing"
)

// TestIDOf pins the device id function: ids already in databases and on
// consoles must not change.
func TestIDOf(t *testing.T) {
	if got := IDOf([]byte("plumb")); got != "pofd6gxqope3olva" {
		t.Errorf("IDOf(plumb) = %s", got)
	}
}

// TestBodyGolden: the status report body a device of this version sends.
func TestBodyGolden(t *testing.T) {
	b, err := json.Marshal(Body{Device: Device{ID: "pofd6gxqope3olva", PublicKey: []byte{1, 2, 3}},
		Status: map[string]any{"update": map[string]any{"phase": "idle"}}, Install: map[string]any{"phase": "done"}})
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/body.json")
	if err != nil {
		t.Fatal(err)
	}
	if string(b)+"\n" != string(want) {
		t.Errorf("body = %s\nwant %s", b, want)
	}
	if StatusPath("x") != "v1/devices/x/status" {
		t.Errorf("StatusPath = %s", StatusPath("x"))
	}
}
