// Package agent is plumbd's update loop: it chooses the release to install
// (Choose), keeps the update's state on the data partition (State), and
// runs the health checks that decide whether a trial boot is committed
// (Check). The loop that ties them to the TUF client and the slots is in
// run.go.
package agent
