//go:build race

package crdt_test

// raceEnabled is true when the race detector is on; the biggest tests then
// use smaller sizes.
const raceEnabled = true
