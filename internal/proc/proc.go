// Package proc builds the node binaries and runs them as OS processes with
// prefixed output. The cluster launcher, the end-to-end tests and the
// benchmark use it.
package proc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Binaries are the node commands of the module.
var Binaries = []string{"locations", "dispatch"}

// Build compiles the node binaries, and any extra packages (paths relative
// to the module root), into dir, running the go command in the module at
// root. A binary is named after the last element of its package path.
func Build(ctx context.Context, root, dir string, extra ...string) error {
	for _, pkg := range append(slices.Clone(Binaries), extra...) {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, filepath.Base(pkg)), "./"+pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("proc: build %s: %w\n%s", pkg, err, out)
		}
	}
	return nil
}

// ModuleRoot finds the module's root, the directory of go.mod, from the
// working directory up; the scripts build the node binaries from there.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("proc: no go.mod above the working directory; run from the module")
		}
		dir = parent
	}
}

// Proc is one node process whose output lines are copied to a writer with
// a name prefix.
type Proc struct {
	Name string
	Path string
	Args []string

	cmd  *exec.Cmd
	done chan struct{}
	err  error
	out  sync.WaitGroup
}

// Start launches the process. Its stdout and stderr lines go to out, each
// prefixed with the process name.
func (p *Proc) Start(out io.Writer) error {
	p.cmd = exec.Command(p.Path, p.Args...)
	// Own process group: a Ctrl-C in the terminal reaches only the
	// launcher, which stops the nodes in order. Pdeathsig: if the launcher
	// itself dies, the nodes are told to stop rather than left running.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		_ = pr.Close()
		_ = pw.Close()
		return fmt.Errorf("proc: start %s: %w", p.Name, err)
	}
	_ = pw.Close() // the child holds its own copy
	p.done = make(chan struct{})
	p.out.Add(1)
	go func() {
		defer p.out.Done()
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			fmt.Fprintf(out, "%-10s | %s\n", p.Name, sc.Text())
		}
	}()
	go func() {
		err := p.cmd.Wait()
		p.out.Wait()
		p.err = err
		close(p.done)
	}()
	return nil
}

// Pid returns the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited and its output is drained.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait blocks until the process exits and returns its exit error.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// ExitCode returns the exit code once the process has exited, -1 if it was
// killed by a signal.
func (p *Proc) ExitCode() int {
	<-p.done
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	return 0
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill sends SIGKILL and waits for the process to exit.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// StopAll sends SIGTERM to every running process and SIGKILL to those
// still running after grace.
func StopAll(procs []*Proc, grace time.Duration, log *slog.Logger) {
	for _, p := range procs {
		if p.done != nil {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(grace)
	for _, p := range procs {
		if p.done == nil {
			continue
		}
		select {
		case <-p.done:
		case <-deadline:
			log.Warn("killing", "name", p.Name)
			p.Kill()
		}
	}
}
