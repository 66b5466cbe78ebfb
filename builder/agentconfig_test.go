package builder

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	if c := imageAgentConfig(t, r); c.JoinToken != "plumbjoin_abc123" {
		t.Errorf("agent config join_token = %q; want the file's token", c.JoinToken)
	}
	for _, bad := range []string{"", "two tokens\n", strings.Repeat("x", 300)} {
		os.WriteFile(tok, []byte(bad), 0o600)
		err := (&build{r: r}).addAgentConfig(fstree.New())
		if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "agent.join_token") {
			t.Errorf("join token file %q: %v; want a bad-input error naming agent.join_token", bad, err)
		}
	}
}

// recipeDir is a recipe's directory with the trusted root file r.json.
func recipeDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "r.json"), []byte(`{"signed":{"_type":"root"},"signatures":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// agentJSON parses recipe text (its agent section) and returns the
// agent config the build writes into the image, as plumbd reads it.
func agentJSON(t *testing.T, text string) *config.Config {
	t.Helper()
	r, err := recipe.Parse("x.yaml", []byte(text), recipeDir(t))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return imageAgentConfig(t, r)
}

// imageAgentConfig returns the agent config the build of r writes into
// the image, as plumbd reads it.
func imageAgentConfig(t *testing.T, r *recipe.Recipe) *config.Config {
	t.Helper()
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
	defer rc.Close()
	data, _ := io.ReadAll(rc)
	c, err := config.Parse(data)
	if err != nil {
		t.Fatalf("the image's agent config: %v\n%s", err, data)
	}
	return c
}

// TestAgentWake: the recipe's agent.wake becomes the image's agent config
// wake (plumbd then holds the wake-up channel): its poll as given, the
// default (1h) when empty, none without it. Bad values are one error line
// naming the field and what is expected.
func TestAgentWake(t *testing.T) {
	const head = "name: a\nversion: 1.0.0\nhardware: b\nkernel: {package: linux-image-amd64}\nrootfs: [{deb: busybox}]\n" +
		"agent:\n  repository: https://updates.example.com/\n  root: r.json\n  poll: 10m\n"
	if c := agentJSON(t, head+"  wake:\n    poll: 2h\n"); c.Wake == nil || c.Wake.PollInterval() != 2*time.Hour || c.ReportBase() != "https://updates.example.com/" {
		t.Errorf("wake.poll 2h: config wake %+v, report base %q; want poll 2h to the repository's fleet service", c.Wake, c.ReportBase())
	}
	if c := agentJSON(t, head+"  wake: {}\n"); c.Wake == nil || c.Wake.Poll != 0 || c.Wake.PollInterval() != config.DefaultWakePoll {
		t.Errorf("wake {}: config wake %+v; want on, poll default %s", c.Wake, config.DefaultWakePoll)
	}
	if c := agentJSON(t, head+"  report: https://fleet.example.com\n  wake: {poll: 10m}\n"); c.Wake == nil || c.Wake.PollInterval() != 10*time.Minute || c.ReportBase() != "https://fleet.example.com" {
		t.Errorf("wake with a report URL: config wake %+v, report base %q; want poll 10m to https://fleet.example.com", c.Wake, c.ReportBase())
	}
	if c := agentJSON(t, head); c.Wake != nil {
		t.Errorf("no wake in the recipe: config wake %+v, want none", c.Wake)
	}

	for _, tc := range []struct{ wake, want string }{
		{"  wake: {poll: soon}\n", `x.yaml:10: agent.wake.poll: expected a duration like "30s" or "5m", got "soon"`},
		{"  wake: {poll: 5m}\n", `x.yaml:10: agent.wake.poll: expected 0 (default 1h0m0s) or at least poll (10m0s), got 5m0s`},
		{"  wake: {poll: -1h}\n", `x.yaml:10: agent.wake.poll: expected 0 (default 1h0m0s) or at least poll (10m0s), got -1h0m0s`},
		{"  wake: [poll]\n", `x.yaml:10: agent.wake: expected a mapping`},
		{"  wake: {pol: 2h}\n", `x.yaml:10: agent.wake: unknown key "pol" (expected one of: poll)`},
		{"  report: \"off\"\n  wake: {}\n", `x.yaml:11: agent.wake: expected the fleet service: wake needs report not "off"`},
	} {
		_, err := recipe.Parse("x.yaml", []byte(head+tc.wake), recipeDir(t))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v; want one line with %q", tc.wake, err, tc.want)
		}
	}
}
