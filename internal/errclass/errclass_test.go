package errclass

import (
	"errors"
	"io/fs"
	"testing"
)

func TestError(t *testing.T) {
	class := errors.New("bad input")
	err := Errorf(class, "--disk %s: %w", "/dev/x", fs.ErrNotExist)
	if err.Error() != "--disk /dev/x: file does not exist" {
		t.Errorf("Error() = %q: the class must not add to the message", err)
	}
	if !errors.Is(err, class) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v) misses the class or the cause", err)
	}
	if New(class, nil) != nil {
		t.Error("New(class, nil) != nil")
	}
}
