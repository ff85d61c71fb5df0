package layout

import (
	"net"
	"strconv"
	"testing"
)

func TestFreeRunHandsOutEachPortOnce(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		base, err := FreeRun(13)
		if err != nil {
			t.Fatal(err)
		}
		if base < freeLo || base+13 > freeHi {
			t.Fatalf("run [%d,%d) outside [%d,%d)", base, base+13, freeLo, freeHi)
		}
		for p := base; p < base+13; p++ {
			if seen[p] {
				t.Fatalf("port %d handed out twice", p)
			}
			seen[p] = true
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(DefaultHost, strconv.Itoa(base)))
		if err != nil {
			t.Fatalf("port %d not bindable: %v", base, err)
		}
		_ = ln.Close()
	}
}
