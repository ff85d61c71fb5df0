//go:build race

package city_test

// raceEnabled is true when the race detector is on; the simulation then
// runs fewer seeds.
const raceEnabled = true
