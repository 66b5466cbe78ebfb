package attest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/plumb-os/plumb/format/attestapi"
	"github.com/plumb-os/plumb/internal/atomicfile"
)

// Enrollment records that a device's AK was bound to its EK by credential
// activation: the verifier issued a challenge encrypted to EKPublic for
// the AK's name, and the device returned the secret.
type Enrollment struct {
	DeviceID string    `json:"device_id"`
	EKPublic []byte    `json:"ek_public"` // PKIX DER
	AKPublic []byte    `json:"ak_public"` // TPMT_PUBLIC
	Enrolled time.Time `json:"enrolled"`
}

// ErrNotEnrolled is returned by a store that has no enrollment for a device.
var ErrNotEnrolled = errors.New("not enrolled")

// EnrollmentStore looks up enrollments. Lookup returns an error wrapping
// ErrNotEnrolled when the device has none.
type EnrollmentStore interface {
	Lookup(deviceID string) (*Enrollment, error)
}

// DirStore keeps one JSON file per device, DIR/<device id>.json. Safe for
// concurrent use within one process.
type DirStore struct {
	Dir string
	mu  sync.Mutex
}

func (s *DirStore) path(id string) (string, error) {
	if err := attestapi.CheckDeviceID(id); err != nil {
		return "", fmt.Errorf("device id: %w", err)
	}
	return filepath.Join(s.Dir, id+".json"), nil
}

// Lookup reads DIR/<id>.json.
func (s *DirStore) Lookup(id string) (*Enrollment, error) {
	p, err := s.path(id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("device %s: %w", id, ErrNotEnrolled)
	}
	if err != nil {
		return nil, err
	}
	var e Enrollment
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &e, nil
}

// Save writes an enrollment (atomically, replacing the device's previous one).
func (s *DirStore) Save(e *Enrollment) error {
	p, err := s.path(e.DeviceID)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(p, append(b, '\n'), 0o644)
}

// MemStore is an in-memory store (tests, `--enrolled FILE`).
type MemStore map[string]*Enrollment

// Lookup returns the device's enrollment.
func (m MemStore) Lookup(id string) (*Enrollment, error) {
	if e, ok := m[id]; ok {
		return e, nil
	}
	return nil, fmt.Errorf("device %s: %w", id, ErrNotEnrolled)
}

// OpenEnrolled opens an enrollment store at path: a directory written by
// DirStore (plumb serve's), or one file holding an Enrollment or a list.
func OpenEnrolled(path string) (EnrollmentStore, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return &DirStore{Dir: path}, nil
	}
	b, err := readBounded(path, 16<<20)
	if err != nil {
		return nil, err
	}
	var list []*Enrollment
	if err := json.Unmarshal(b, &list); err != nil {
		var one Enrollment
		if err2 := json.Unmarshal(b, &one); err2 != nil {
			return nil, fmt.Errorf("%s: expected an enrollment or a list of them: %w", path, err2)
		}
		list = []*Enrollment{&one}
	}
	m := MemStore{}
	for _, e := range list {
		m[e.DeviceID] = e
	}
	return m, nil
}
