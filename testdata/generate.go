// Package testdata holds ringcap's replay corpus, the golden files the
// replay tests compare with (and, in golden/filter, the listings of the
// filter translation that package bpf's tests compare with), and the fuzz
// seeds of the input reader.
// `go generate ./testdata` rewrites the corpus; `go test ./... -update`
// rewrites the golden files from it.
package testdata

//go:generate go run ./gen
