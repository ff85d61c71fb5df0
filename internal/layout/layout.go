// Package layout assigns ports to the nodes of a cluster on one host and
// holds the command-line flags every node shares.
//
// The membership provider polls a fixed list of peer health addresses, so
// every node must know every port a member could use before it starts.
// Nodes therefore live in numbered slots, each with a remote port and a
// health port at a fixed offset from two bases. Slot 0 is dispatch, slots
// 1 to 3 are gotham, metropolis and capitol, and further cities (up to
// Slots) take the first free slot from 4 on. Every node lists the health
// ports of all slots as its peers, so a city started later on a free slot
// is found by everyone without restarting anything.
package layout

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/superhero-cluster/superhero/messages"
)

// Defaults of Layout.
const (
	DefaultHost       = "127.0.0.1"
	DefaultRemoteBase = 8100
	DefaultHealthBase = 6330
	DefaultSlots      = 16
	// FirstExtraSlot is the first slot for cities beyond the original three.
	FirstExtraSlot = 4
	// CookieEnv is the environment variable read for the cookie.
	CookieEnv = "SUPERHERO_COOKIE"
)

// fixed are the slots of the original nodes.
var fixed = map[string]int{messages.DispatchName: 0, "gotham": 1, "metropolis": 2, "capitol": 3}

// Layout is where the nodes of one cluster listen.
type Layout struct {
	// Host is the interface every node binds. Default 127.0.0.1.
	Host string
	// RemoteBase is slot 0's remote (gRPC) port; slot i uses RemoteBase+i.
	// Default 8100.
	RemoteBase int
	// HealthBase is slot 0's health port; slot i uses HealthBase+i.
	// Default 6330.
	HealthBase int
	// Slots is how many slots exist. Default 16.
	Slots int
}

// Default returns the default layout.
func Default() Layout {
	return Layout{Host: DefaultHost, RemoteBase: DefaultRemoteBase, HealthBase: DefaultHealthBase, Slots: DefaultSlots}
}

// RegisterFlags adds -host, -remote-base, -health-base and -slots to fs.
func (l *Layout) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&l.Host, "host", l.Host, "interface the node binds and advertises")
	fs.IntVar(&l.RemoteBase, "remote-base", l.RemoteBase, "remote port of slot 0; slot i uses remote-base+i")
	fs.IntVar(&l.HealthBase, "health-base", l.HealthBase, "health port of slot 0; slot i uses health-base+i")
	fs.IntVar(&l.Slots, "slots", l.Slots, "number of node slots every node polls")
}

// RemotePort returns slot's remote port.
func (l Layout) RemotePort(slot int) int { return l.RemoteBase + slot }

// HealthPort returns slot's health port.
func (l Layout) HealthPort(slot int) int { return l.HealthBase + slot }

// Peers returns the health addresses of every slot.
func (l Layout) Peers() []string {
	out := make([]string, l.Slots)
	for i := range out {
		out[i] = net.JoinHostPort(l.Host, strconv.Itoa(l.HealthPort(i)))
	}
	return out
}

// ErrNoSlot means every slot for extra cities is taken.
var ErrNoSlot = errors.New("layout: no free slot")

// Slot returns the slot of a named node: the fixed one for dispatch and the
// original cities, else the first extra slot whose ports are free.
func (l Layout) Slot(name string) (int, error) {
	if s, ok := fixed[name]; ok {
		return s, nil
	}
	for s := FirstExtraSlot; s < l.Slots; s++ {
		if free(l.Host, l.RemotePort(s)) && free(l.Host, l.HealthPort(s)) {
			return s, nil
		}
	}
	return 0, fmt.Errorf("%w for %q among %d slots", ErrNoSlot, name, l.Slots)
}

func free(host string, port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

// Cookie returns the cookie flag value, else $SUPERHERO_COOKIE, else "" (the
// node package's default).
func Cookie(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return os.Getenv(CookieEnv)
}
