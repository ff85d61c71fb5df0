// Command cluster builds the node binaries and runs the whole Superhero
// Cluster on this machine: the three cities and dispatch, each as its own OS
// process, with their logs prefixed by node name. Ctrl-C stops all of them.
//
//	go run ./scripts/cluster [-cities gotham,metropolis,capitol] [-- extra node flags]
//
// A node that exits is reported and not restarted: a city bombed too often
// stays down, as in the original, while the rest carry on.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	cities := fs.String("cities", "gotham,metropolis,capitol", "comma-separated cities to start")
	binDir := fs.String("bin", "", "where to build the node binaries (default: a cache folder)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	extra := fs.Args() // passed to every node, e.g. -protocol original

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", "launcher")

	dir := *binDir
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return err
		}
		dir = filepath.Join(cache, "superhero-cluster", "bin")
	}
	start := time.Now()
	log.Info("building", "dir", dir)
	if err := Build(ctx, dir); err != nil {
		return err
	}
	log.Info("built", "took", time.Since(start).Round(time.Millisecond))

	var procs []*Proc
	for _, c := range strings.Split(*cities, ",") {
		if c = strings.TrimSpace(c); c != "" {
			procs = append(procs, &Proc{Name: c, Path: filepath.Join(dir, "locations"), Args: append([]string{"-city", c}, extra...)})
		}
	}
	procs = append(procs, &Proc{Name: "dispatch", Path: filepath.Join(dir, "dispatch"), Args: extra})

	var wg sync.WaitGroup
	for _, p := range procs {
		if err := p.Start(os.Stdout); err != nil {
			stopAll(procs, log)
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.Wait()
			log.Warn("node exited", "name", p.Name, "err", errString(err))
		}()
	}
	log.Info("cluster started; open http://localhost:4900 — Ctrl-C stops it", "nodes", len(procs))
	<-ctx.Done()
	log.Info("stopping")
	stopAll(procs, log)
	wg.Wait()
	return nil
}

func errString(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// Build compiles the city and dispatch binaries into dir.
func Build(ctx context.Context, dir string) error {
	for _, pkg := range []string{"locations", "dispatch"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, pkg), "./"+pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", pkg, err)
		}
	}
	return nil
}

// Proc is one node process whose output is copied line by line with a
// name prefix.
type Proc struct {
	Name string
	Path string
	Args []string

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start launches the process, prefixing its stdout and stderr lines.
func (p *Proc) Start(out io.Writer) error {
	p.cmd = exec.Command(p.Path, p.Args...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.done = make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			fmt.Fprintf(out, "%-10s | %s\n", p.Name, sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		p.err = p.cmd.Wait()
		_ = pw.Close()
		close(p.done)
	}()
	return nil
}

// Wait blocks until the process exits.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// stopAll sends SIGTERM to every process and SIGKILL to those still
// running after a grace period.
func stopAll(procs []*Proc, log *slog.Logger) {
	for _, p := range procs {
		if p.cmd != nil && p.cmd.Process != nil {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(5 * time.Second)
	for _, p := range procs {
		if p.done == nil {
			continue
		}
		select {
		case <-p.done:
		case <-deadline:
			log.Warn("killing", "name", p.Name)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}
