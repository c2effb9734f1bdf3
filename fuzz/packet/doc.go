// Package packetfuzz holds the fuzz targets of dataplane/packet: every
// parser and classifier differential against gopacket where gopacket
// decodes the same thing, build-then-parse round trips, and checksums
// against a naive byte-pair reference. The targets and their seed corpora
// (testdata/fuzz/FuzzX) live in the _test.go files; regenerate the seeds
// with
//
//	go test ./fuzz/packet -run TestSeedCorpus -update-corpus
//
// Run one target for a while with, for example,
//
//	go test ./fuzz/packet -run '^$' -fuzz '^FuzzIPv4$' -fuzztime 2m -parallel 1
package packetfuzz

//go:generate go test -run TestSeedCorpus -update-corpus
