package plumbd

import (
	"bytes"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/internal/cli"
)

// TestAttestBadInput: plumbd attest refuses bad flags with one line and
// exit code 2 before it touches a TPM.
func TestAttestBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"attest"}, `"output" not set`},
		{[]string{"attest", "-o", "-", "--nonce", "zz"}, "--nonce: expected 8..64 bytes as hex"},
		{[]string{"attest", "-o", "-", "--nonce", "0011"}, "--nonce: expected 8..64 bytes as hex"},
	} {
		var stdout, stderr bytes.Buffer
		code := Run(t.Context(), tc.args, &stdout, &stderr)
		msg := stderr.String()
		if code != cli.ExitBadInput || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, tc.want) {
			t.Errorf("plumbd %q: exit %d, stderr %q; want %d and one line containing %q", tc.args, code, msg, cli.ExitBadInput, tc.want)
		}
	}
}
