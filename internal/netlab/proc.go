package netlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// Command returns a command that runs name with args inside the node's
// namespace (ip netns exec), in a process group of its own, killed if this
// process dies. When ctx is done the whole group gets SIGKILL. Run it with
// Start to have it tracked and logged; run directly (Run, Output), it is
// still killed by Close if it outlives the call. For an unknown node, the
// command's Start returns an error.
func (l *Lab) Command(ctx context.Context, node, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.Namespace(node), name}, args...)...)
	if err := l.check(node); err != nil {
		cmd.Err = err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

// Proc is a process the lab started. Its signals go to its whole process
// group.
type Proc struct {
	node string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// Start starts cmd, made by Command for the same node, and tracks it so
// that Close stops it. When cmd.Stdout and cmd.Stderr are both nil, both go
// to Dir/<node>-<n>.log, n counting from 1 the processes started on the
// node (see Proc.LogFile).
func (l *Lab) Start(node string, cmd *exec.Cmd) (*Proc, error) {
	if err := l.check(node); err != nil {
		return nil, err
	}
	if want := []string{"ip", "netns", "exec", l.Namespace(node)}; len(cmd.Args) <= len(want) || !slices.Equal(cmd.Args[:len(want)], want) {
		return nil, fmt.Errorf("netlab: start on %s: command %q was not made by Command for that node", node, cmd.Args)
	}
	l.mu.Lock()
	defer l.mu.Unlock() // held across the start so that Close cannot miss the process
	if l.closed {
		return nil, ErrClosed
	}
	p := &Proc{node: node, cmd: cmd, done: make(chan struct{})}
	var logFile *os.File
	if cmd.Stdout == nil && cmd.Stderr == nil {
		p.log = filepath.Join(l.dir, fmt.Sprintf("%s-%d.log", node, l.started[node]+1))
		f, err := os.Create(p.log)
		if err != nil {
			return nil, fmt.Errorf("netlab: start on %s: %w", node, err)
		}
		cmd.Stdout, cmd.Stderr, logFile = f, f, f
	}
	if err := cmd.Start(); err != nil {
		if logFile != nil {
			_ = logFile.Close()
		}
		return nil, fmt.Errorf("netlab: start %s on %s: %w", cmd.Args[4], node, err)
	}
	l.started[node]++
	l.procs = append(l.procs, p)
	log := l.log.With("node", node, "pid", cmd.Process.Pid)
	log.Info("netlab: started", "cmd", cmd.Args[4], "log", p.log)
	go func() {
		p.err = cmd.Wait()
		if logFile != nil {
			_ = logFile.Close()
		}
		close(p.done)
		log.Info("netlab: exited", "cmd", cmd.Args[4], "status", exitStatus(p.err))
	}()
	return p, nil
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// Node returns the node the process runs on.
func (p *Proc) Node() string { return p.node }

// Pid returns the process id (also its process group id).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// LogFile returns the file of its stdout and stderr, or "" when the caller
// set them.
func (p *Proc) LogFile() string { return p.log }

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit and returns what exec.Cmd.Wait did
// (nil for exit status 0). It may be called any number of times.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Signal sends sig to the process's group (SIGSTOP and SIGCONT freeze and
// thaw all of it). It returns os.ErrProcessDone once the process has exited.
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return os.ErrProcessDone
	}
	if err := syscall.Kill(-p.Pid(), sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return fmt.Errorf("netlab: signal %v to %s pid %d: %w", sig, p.node, p.Pid(), err)
	}
	return nil
}

// Kill sends SIGKILL to the process group and waits for the process to
// exit. It returns nil if the process had exited already.
func (p *Proc) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-p.done
	return nil
}

// Stop asks the process to exit: SIGTERM to its group (and SIGCONT, in
// case it is stopped), then SIGKILL if it has not exited after timeout. It
// returns once the process has exited.
func (p *Proc) Stop(timeout time.Duration) {
	if p.Signal(syscall.SIGTERM) != nil {
		_ = p.Kill()
		return
	}
	_ = p.Signal(syscall.SIGCONT)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.Kill()
	}
}
