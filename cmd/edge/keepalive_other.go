//go:build !linux

package main

import "net"

// keepAliveOnListener leaves TCP keep-alive to Go, which sets it on each
// accepted connection.
func keepAliveOnListener(*net.ListenConfig) {}
