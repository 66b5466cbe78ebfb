//go:build !linux

package attest

func mountSecurityfs(string) error { return nil }
