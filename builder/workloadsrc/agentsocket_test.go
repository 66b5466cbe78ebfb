package workloadsrc

import "testing"

// TestAgentSocket: agent_socket asks for plumbd's local API socket; only
// a boolean is accepted.
func TestAgentSocket(t *testing.T) {
	const img = "r.example/x@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	src, err := ParseYAML("w.yaml", []byte("containers:\n  - name: a\n    image: "+img+"\n    agent_socket: true\n"), "g")
	if err != nil || !src.Manifest.Containers[0].AgentSocket {
		t.Fatalf("ParseYAML(agent_socket: true) = %+v, %v", src, err)
	}
	_, err = ParseYAML("w.yaml", []byte("containers:\n  - name: a\n    image: "+img+"\n    agent_socket: yes please\n"), "g")
	if want := `w.yaml:4: containers[0].agent_socket: expected true or false, got "yes please"`; err == nil || err.Error() != want {
		t.Errorf("ParseYAML(agent_socket: yes please) = %v, want %q", err, want)
	}
}
