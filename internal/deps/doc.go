// Package deps holds TestMakeDepsInstallsEveryTool, which checks that every
// host tool a test, a make target or a script runs is installed by
// `make deps` on a fresh Debian 12 (or by make deps-bench / the cleanroot
// target for the tools only they use). It has no code of its own.
package deps
