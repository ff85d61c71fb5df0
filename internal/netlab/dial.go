package netlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// DialContext connects, from this process, to address as if from node: the
// socket is made inside the node's namespace, so the lab's addresses are
// reachable and the node's faults apply. address must be an IP and port
// (a name would be resolved outside the lab). Use it as an
// http.Transport's DialContext, for instance:
//
//	func(ctx context.Context, network, addr string) (net.Conn, error) {
//		return lab.DialContext(ctx, "dispatch", network, addr)
//	}
func (l *Lab) DialContext(ctx context.Context, node, network, address string) (net.Conn, error) {
	if err := l.check(node); err != nil {
		return nil, err
	}
	if _, err := netip.ParseAddrPort(address); err != nil {
		return nil, fmt.Errorf("netlab: dial %s from %s: want an IP and port: %w", address, node, err)
	}
	var conn net.Conn
	var dialErr error
	err := inNamespace(filepath.Join(netnsDir, l.Namespace(node)), func() {
		// With one IP address the dialer makes the socket in this
		// goroutine, on this thread, so in the node's namespace.
		conn, dialErr = new(net.Dialer).DialContext(ctx, network, address)
	})
	if err != nil {
		return nil, err
	}
	return conn, dialErr
}

// inNamespace runs fn on a thread moved into the network namespace at path,
// then moves the thread back. If it cannot move back, the thread stays
// locked to the goroutine and exits with it, so no other goroutine runs in
// the wrong namespace.
func inNamespace(path string, fn func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		back, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netlab: %w", err)
			return
		}
		defer back.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netlab: namespace: %w", err)
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netlab: enter %s: %w", path, err)
			return
		}
		fn()
		if err := setns(back); err != nil {
			// Stay locked: the thread dies with this goroutine.
			errc <- fmt.Errorf("netlab: leave %s: %w", path, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	return <-errc
}

func setns(f *os.File) error { return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) }
