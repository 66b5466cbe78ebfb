// Package yamlnode holds what the project's strict YAML readers (recipes,
// workload YAML) share: naming what a node holds for "expected X, got Y"
// messages.
package yamlnode

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Describe names what a node holds: "a mapping", "a list", "nothing",
// "boolean true", "number 8080", a quoted string (abbreviated).
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.ShortTag() {
	case "!!null":
		return "nothing"
	case "!!bool":
		return fmt.Sprintf("boolean %s", n.Value)
	case "!!int", "!!float":
		return fmt.Sprintf("number %s", n.Value)
	case "!!str":
		return fmt.Sprintf("%q", Abbrev(n.Value))
	}
	return fmt.Sprintf("%s %q", n.ShortTag(), Abbrev(n.Value))
}

// Abbrev shortens a long value for an error message (60 bytes and "...").
func Abbrev(s string) string {
	const max = 60
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
