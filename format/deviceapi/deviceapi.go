// Package deviceapi is the contract between a device (plumbd, the
// installer) and the fleet service for the device's own writes: the
// device id, the status report body and path, and the join token header.
// Device authentication is mutual TLS with the identity key
// (docs/fleet.md): the server checks IDOf(the client certificate's key)
// against the id the request names.
package deviceapi

import (
	"crypto/sha256"
	"encoding/base32"
	"strings"
	"time"
)

// IDOf derives the device id from its identity key's PKIX
// (SubjectPublicKeyInfo) DER: 16 lower-case base32 characters of the first
// 10 bytes of its sha256.
func IDOf(pkix []byte) string {
	sum := sha256.Sum256(pkix)
	return strings.ToLower(base32.StdEncoding.EncodeToString(sum[:10]))
}

// JoinTokenHeader carries the device's join token on its writes; the
// fleet service reads it only for a device it does not know yet.
const JoinTokenHeader = "Plumb-Join-Token"

// MaxReport bounds a status report's body.
const MaxReport = 64 << 10

// StatusPath is where a device posts its status, relative to the base URL.
func StatusPath(id string) string { return "v1/devices/" + id + "/status" }

// WakePath is a device's wake-up stream (docs/wake.md), relative to the
// base URL: GET, mutual TLS as for status; a text/event-stream whose
// events named WakeEvent carry timestamp.json's current ETag (at once, and
// after each change), with comment lines as heartbeats.
func WakePath(id string) string { return "v1/devices/" + id + "/wake" }

// WakeEvent is the wake-up stream's event name.
const WakeEvent = "timestamp"

// WakeStatus is the device's side of the wake-up channel, as plumbd
// writes it (DataDir/wake.json), `plumbd status` prints it and a status
// report carries it (the status's member "wake").
type WakeStatus struct {
	// State is WakeConnected or WakeDown.
	State string `json:"state"`
	// Since is when the channel went into State.
	Since time.Time `json:"since"`
	// LastWake is when the stream last said that timestamp.json changed
	// (zero: not since plumbd started).
	LastWake time.Time `json:"last_wake,omitzero"`
	// Error is why the channel is down: the last failed attempt or drop.
	Error string `json:"error,omitempty"`
	// Stale is set by readers (plumbd status) when Since is from before
	// the current boot: plumbd has not held the channel since.
	Stale bool `json:"stale,omitempty"`
}

// States of WakeStatus.
const (
	WakeConnected = "connected"
	WakeDown      = "down"
)

// Device identifies the reporting device.
type Device struct {
	ID        string `json:"id"`
	PublicKey []byte `json:"public_key"` // PKIX DER (base64 in JSON)
}

// Body is a status report: the device, plumbd's status (agent state,
// release facts, workloads) and, from the installer, its progress.
type Body struct {
	Device  Device `json:"device"`
	Status  any    `json:"status"`
	Install any    `json:"install,omitempty"`
}
