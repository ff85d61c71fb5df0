// Command cluster builds the node binaries and runs the whole Superhero
// Cluster on this machine: the three cities and dispatch, each as its own OS
// process, with their logs prefixed by node name. Ctrl-C stops all of them.
//
//	go run ./scripts/cluster [-cities gotham,metropolis,capitol] [-- extra node flags]
//
// Dispatch serves its metrics at http://localhost:4900/metrics; the cities
// serve theirs on 127.0.0.1:4901, 4902... in -cities order
// (-metrics-port, 0 for none).
//
// A node that exits is reported and not restarted: a city bombed too often
// stays down, as in the original, while the rest carry on.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/superhero-cluster/superhero/internal/proc"
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
	metricsPort := fs.Int("metrics-port", 4901, "the first city's metrics port on 127.0.0.1, the next city's the next port; 0: no city metrics")
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
	if err := proc.Build(ctx, ".", dir); err != nil {
		return err
	}
	log.Info("built", "took", time.Since(start).Round(time.Millisecond))

	var procs []*proc.Proc
	for _, c := range strings.Split(*cities, ",") {
		if c = strings.TrimSpace(c); c != "" {
			args := []string{"-city", c}
			if *metricsPort > 0 {
				args = append(args, "-metrics", fmt.Sprintf("127.0.0.1:%d", *metricsPort+len(procs)))
			}
			procs = append(procs, &proc.Proc{Name: c, Path: filepath.Join(dir, "locations"), Args: append(args, extra...)})
		}
	}
	procs = append(procs, &proc.Proc{Name: "dispatch", Path: filepath.Join(dir, "dispatch"), Args: extra})

	var wg sync.WaitGroup
	for _, p := range procs {
		if err := p.Start(os.Stdout); err != nil {
			proc.StopAll(procs, 5*time.Second, log)
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.Wait()
			level := slog.LevelWarn
			if ctx.Err() != nil {
				level = slog.LevelInfo
			}
			log.Log(context.Background(), level, "node exited", "name", p.Name, "err", errString(err))
		}()
	}
	log.Info("cluster started; open http://localhost:4900 — Ctrl-C stops it", "nodes", len(procs))
	<-ctx.Done()
	log.Info("stopping")
	proc.StopAll(procs, 5*time.Second, log)
	wg.Wait()
	return nil
}

func errString(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}
