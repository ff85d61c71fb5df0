// Command netlab runs the Superhero Cluster as if across hosts: etcd,
// dispatch and every city each in a network namespace of their own (see
// package internal/netlab), finding each other through etcd, talking mutual
// TLS, and lets you break the network between them.
//
//	sudo go run ./scripts/netlab [flags] [-- extra node flags]
//
// It builds the node binaries, issues certificates for every node (package
// devcerts), builds the lab, starts etcd with client-certificate
// authentication, then the cities and dispatch, prints where everything is,
// and reads commands on stdin (or from -script FILE) until EOF, quit or
// Ctrl-C. Type help for the commands. On the way out, by any of these or
// SIGTERM, it stops every process and removes the lab; a lab left behind by
// a netlab that was killed outright is removed by the next one, or by
// netlab -sweep.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/superhero-cluster/superhero/internal/devcerts"
	"github.com/superhero-cluster/superhero/internal/logx"
	"github.com/superhero-cluster/superhero/internal/netlab"
	"github.com/superhero-cluster/superhero/internal/proc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "netlab:", err)
		os.Exit(1)
	}
}

// Ports the nodes use inside their namespaces.
const (
	remotePort = 8100
	httpPort   = 4900
)

// options are the command's flags.
type options struct {
	dir, bin, script, prefix, forward, logLevel string
	cities                                      []string
	stopTimeout                                 time.Duration
	sweep                                       bool
	extra                                       []string // passed to every node
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("netlab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./scripts/netlab [flags] [-- extra node flags]   (as root)")
		fs.PrintDefaults()
		fmt.Fprint(stderr, "\ncommands, on stdin or in -script:\n"+helpText)
	}
	fs.StringVar(&o.dir, "dir", "", "work `directory` for binaries, certificates, logs and etcd's data (default: a new one under $TMPDIR, kept)")
	fs.StringVar(&o.bin, "bin", "", "use the node binaries locations and dispatch in this `directory` instead of building them")
	fs.StringVar(&o.script, "script", "", "run the commands of this `file` (with sleep lines) instead of reading stdin, then clean up and exit")
	fs.StringVar(&o.prefix, "prefix", netlab.DefaultPrefix, "name prefix of the lab's namespaces and nftables tables")
	fs.StringVar(&o.forward, "forward", "", "also serve dispatch's page and API on this local `address` (e.g. 127.0.0.1:4901), relayed into the lab")
	fs.StringVar(&o.logLevel, "log-level", "info", "level of netlab's own log on stderr: debug, info, warn, error")
	cities := fs.String("cities", "gotham,metropolis,capitol", "comma-separated cities to run")
	fs.DurationVar(&o.stopTimeout, "stop-timeout", 5*time.Second, "how long a node is given to exit after SIGTERM before SIGKILL")
	fs.BoolVar(&o.sweep, "sweep", false, "only remove the namespaces of dead labs with -prefix, and exit")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.extra = fs.Args()
	for _, c := range strings.Split(*cities, ",") {
		if c = strings.TrimSpace(c); c != "" {
			o.cities = append(o.cities, c)
		}
	}
	if len(o.cities) == 0 {
		return o, errors.New("-cities: no city")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log, err := logx.New(stderr, o.logLevel)
	if err != nil {
		return err
	}
	if o.sweep {
		removed, err := netlab.Sweep(ctx, o.prefix)
		for _, ns := range removed {
			fmt.Fprintln(stdout, "removed", ns)
		}
		return err
	}
	if err := netlab.Available("etcd"); err != nil {
		return fmt.Errorf("%w (run as root; apt-get install -y iproute2 nftables etcd-server etcd-client)", err)
	}
	var script io.Reader
	if o.script != "" {
		f, err := os.Open(o.script)
		if err != nil {
			return err
		}
		defer f.Close()
		script = f
	}

	if o.dir == "" {
		if o.dir, err = os.MkdirTemp("", "netlab-"); err != nil {
			return err
		}
	}
	if o.dir, err = filepath.Abs(o.dir); err != nil {
		return err
	}
	if o.bin == "" {
		o.bin = filepath.Join(o.dir, "bin")
		if err := build(ctx, o.bin, log); err != nil {
			return err
		}
	}
	for _, b := range proc.Binaries {
		if _, err := os.Stat(filepath.Join(o.bin, b)); err != nil {
			return fmt.Errorf("node binary: %w", err)
		}
	}

	nodes := append([]string{netlab.EtcdNode, "dispatch"}, o.cities...)
	lab, err := netlab.New(ctx, netlab.Config{Prefix: o.prefix, Nodes: nodes, Dir: o.dir, Logger: log, StopTimeout: o.stopTimeout})
	if err != nil {
		return err
	}
	s := newSession(lab, o, stdout, log)
	defer func() { err = errors.Join(err, s.close()) }()

	if err := s.certificates(); err != nil {
		return err
	}
	if err := s.startEtcd(ctx); err != nil {
		return err
	}
	// The relay first: dispatch is told to answer for its address.
	if o.forward != "" {
		if err := s.startForward(o.forward); err != nil {
			return err
		}
	}
	for _, n := range append(o.cities[:len(o.cities):len(o.cities)], "dispatch") {
		if err := s.startNode(n); err != nil {
			return err
		}
	}
	s.summary()
	if script != nil {
		return s.serve(ctx, script, o.script, false)
	}
	return s.serve(ctx, os.Stdin, "", isTerminal(os.Stdin))
}

// build compiles the node binaries of the module this command runs in.
func build(ctx context.Context, dir string, log *slog.Logger) error {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return errors.New("not inside the module: run from the repository (or give -bin)")
	}
	start := time.Now()
	log.Info("building", "dir", dir)
	if err := proc.Build(ctx, filepath.Dir(gomod), dir); err != nil {
		return err
	}
	log.Info("built", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// certificates issues the CA and a certificate for every node, valid for its
// lab address, and one for the operator (admin), for etcdctl and curl.
func (s *session) certificates() error {
	var nodes []devcerts.Node
	for _, n := range s.lab.Nodes() {
		nodes = append(nodes, devcerts.Node{Name: n, Hosts: []string{s.lab.Addr(n).String()}})
	}
	nodes = append(nodes, devcerts.Node{Name: "admin"})
	res, err := devcerts.Generate(s.certDir, nodes, devcerts.Options{Force: true})
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	s.log.Info("certificates", "dir", s.certDir, "ca_reused", res.CAReused, "files", len(res.Written))
	return nil
}

func (s *session) cert(node string) (cert, key string) {
	return filepath.Join(s.certDir, node+".pem"), filepath.Join(s.certDir, node+"-key.pem")
}

func (s *session) ca() string { return filepath.Join(s.certDir, devcerts.CAFile) }

// nodeArgs returns the command line of a city or dispatch.
func (s *session) nodeArgs(node string) (bin string, args []string) {
	addr := s.lab.Addr(node).String()
	cert, key := s.cert(node)
	common := []string{
		"-provider", "etcd", "-etcd", s.etcdEndpoint(),
		"-host", addr, "-port", fmt.Sprint(remotePort),
		"-tls-ca", s.ca(), "-tls-cert", cert, "-tls-key", key,
	}
	if node == "dispatch" {
		args = append(common, "-http", s.httpAddr())
		if s.forwardAddr != "" {
			// The page through the relay names the relay's address.
			_, port, _ := net.SplitHostPort(s.forwardAddr)
			args = append(args, "-allowed-hosts", s.forwardAddr+","+net.JoinHostPort("localhost", port))
		}
		return filepath.Join(s.opts.bin, "dispatch"), append(args, s.opts.extra...)
	}
	args = append([]string{"-city", node}, common...)
	return filepath.Join(s.opts.bin, "locations"), append(args, s.opts.extra...)
}

func (s *session) etcdEndpoint() string {
	return "https://" + net.JoinHostPort(s.lab.Addr(netlab.EtcdNode).String(), "2379")
}

func (s *session) httpAddr() string {
	return net.JoinHostPort(s.lab.Addr("dispatch").String(), fmt.Sprint(httpPort))
}

// summary prints where everything is.
func (s *session) summary() {
	l := s.lab
	var b strings.Builder
	fmt.Fprintf(&b, "lab %s is up; work directory %s\n\n", l.Name(), s.opts.dir)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  node\taddress\tnamespace\tlog")
	for _, n := range l.Nodes() {
		log := "-"
		if p := s.procs[n]; p != nil {
			log = p.LogFile()
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", n, l.Addr(n), l.Namespace(n), log)
	}
	_ = tw.Flush()
	adminCert, adminKey := s.cert("admin")
	fmt.Fprintf(&b, "\netcd     %s (client certificates from %s)\n", s.etcdEndpoint(), s.ca())
	fmt.Fprintf(&b, "etcdctl  ip netns exec %s etcdctl --endpoints %s --cacert %s --cert %s --key %s get --prefix /\n",
		l.Namespace(netlab.EtcdNode), s.etcdEndpoint(), s.ca(), adminCert, adminKey)
	fmt.Fprintf(&b, "page     ip netns exec %s curl -s -H 'Authorization: Bearer %s' http://%s/\n", l.Namespace("dispatch"), s.apiToken, s.httpAddr())
	if s.forwardAddr != "" {
		fmt.Fprintf(&b, "         or http://%s/ from this machine (relayed into the lab)\n", s.forwardAddr)
	}
	dispatchLog := "dispatch's log"
	if p := s.procs["dispatch"]; p != nil {
		dispatchLog = p.LogFile()
	}
	fmt.Fprintf(&b, "         in a browser: the one-time link of dispatch's log (grep 'page login link' %s)", dispatchLog)
	if s.forwardAddr != "" {
		fmt.Fprintf(&b, ",\n         with http://%s in place of http://%s", s.forwardAddr, s.httpAddr())
	}
	fmt.Fprintf(&b, "\napi      Authorization: Bearer %s\n", s.apiToken)
	fmt.Fprintf(&b, "logs     %s\n\ntype help for the commands\n", l.Dir())
	s.printf("%s", b.String())
}
