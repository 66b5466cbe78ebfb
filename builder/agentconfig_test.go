package builder

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/builder/recipe"
	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/internal/fstree"
)

// TestAgentJoinToken: the recipe's agent.join_token file becomes the
// agent config's join_token; a file that is not one token is refused.
func TestAgentJoinToken(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "join-token")
	os.WriteFile(tok, []byte("plumbjoin_abc123\n"), 0o600)
	r := &recipe.Recipe{Hardware: "qemu", Channel: "stable", Agent: &recipe.Agent{Repository: "https://x/", Poll: 5e9, Commit: "health", JoinToken: tok}}
	tree := fstree.New()
	if err := (&build{r: r}).addAgentConfig(tree); err != nil {
		t.Fatal(err)
	}
	n := tree.Get(config.Path)
	if n == nil {
		t.Fatal("no agent config")
	}
	rc, err := n.Source.Open()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	c, err := config.Parse(data)
	if err != nil || c.JoinToken != "plumbjoin_abc123" {
		t.Errorf("agent config join_token = %q, %v; want the file's token", c.JoinToken, err)
	}
	for _, bad := range []string{"", "two tokens\n", strings.Repeat("x", 300)} {
		os.WriteFile(tok, []byte(bad), 0o600)
		err := (&build{r: r}).addAgentConfig(fstree.New())
		if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "agent.join_token") {
			t.Errorf("join token file %q: %v; want a bad-input error naming agent.join_token", bad, err)
		}
	}
}
