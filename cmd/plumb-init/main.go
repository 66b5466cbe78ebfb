// Command plumb-init is the /init of Plumb's initramfs: it mounts the
// slot's root filesystem and hands over to its init. All logic lives in
// updater/earlyinit. Build it static:
//
//	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' ./cmd/plumb-init
package main

import "github.com/plumb-os/plumb/updater/earlyinit"

func main() { earlyinit.Main() }
