//go:build !race

package city_test

const raceEnabled = false
