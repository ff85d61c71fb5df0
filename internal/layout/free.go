package layout

import (
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
)

// Ports for test and benchmark clusters come from this range, below
// Linux's ephemeral range (32768 and up), so outgoing connections never
// take them.
const (
	freeLo = 20000
	freeHi = 32000
)

var (
	reservedMu sync.Mutex
	reserved   = map[int]bool{}
)

// ErrNoFreePorts means no run of free ports was found.
var ErrNoFreePorts = errors.New("layout: no free run of ports")

// FreeRun returns the first of n consecutive loopback ports that are free
// now and that this process has not handed out before, so a node still
// going away cannot clash with the next cluster. Tests and the benchmark
// use it to run clusters side by side with a real one.
func FreeRun(n int) (int, error) {
	reservedMu.Lock()
	defer reservedMu.Unlock()
	for range 500 {
		base := freeLo + rand.IntN(freeHi-freeLo-n)
		if runFree(base, n) {
			for p := base; p < base+n; p++ {
				reserved[p] = true
			}
			return base, nil
		}
	}
	return 0, ErrNoFreePorts
}

func runFree(base, n int) bool {
	for p := base; p < base+n; p++ {
		if reserved[p] {
			return false
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(DefaultHost, strconv.Itoa(p)))
		if err != nil {
			return false
		}
		_ = ln.Close()
	}
	return true
}
