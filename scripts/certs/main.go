// Command certs creates a development CA and a certificate for each
// cluster member, for mutual TLS between the members (package tlsconf):
//
//	go run ./scripts/certs -out DIR -hosts gotham=198.18.0.11,metropolis=198.18.0.12,capitol=198.18.0.13,dispatch=198.18.0.10,etcd=198.18.0.2
//
// -hosts lists the members as comma-separated name[=host[+host...]]
// entries: each host, an IP address or a DNS name that peers dial the
// member by, goes into the member's certificate, as do the name itself,
// localhost, 127.0.0.1 and ::1. For example dispatch=198.18.0.10+dispatch.example
// gives dispatch two hosts.
//
// It writes DIR/ca.pem and DIR/ca-key.pem (the CA) and DIR/<name>.pem and
// DIR/<name>-key.pem for each member, prints a line for every file written
// and the flags each node is started with:
//
//	-tls-ca DIR/ca.pem -tls-cert DIR/gotham.pem -tls-key DIR/gotham-key.pem
//
// Run it again with new names to add members: the CA already in DIR signs
// them. It refuses to replace an existing member's files unless -force is
// given, and never replaces the CA. -days sets the validity (default 365).
//
// An etcd server takes the same files under other flags:
//
//	--trusted-ca-file DIR/ca.pem --cert-file DIR/etcd.pem --key-file DIR/etcd-key.pem --client-cert-auth
//
// The exit status is 2 for bad flags, 1 for other failures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/superhero-cluster/superhero/internal/devcerts"
)

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &ue) && ue.printed:
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "certs: %v\nrun 'go run ./scripts/certs -h' for usage\n", err)
	default:
		fmt.Fprintln(os.Stderr, "certs:", err)
	}
	os.Exit(exitCode(err))
}

// A usageError is an error in the command line.
type usageError struct {
	err     error
	printed bool // the flag package has printed it with the usage
}

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{err: fmt.Errorf(format, args...)}
}

// exitCode returns the exit status for the error run returned: 0 for none
// or a request for help, 2 for a usage error, else 1.
func exitCode(err error) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		return 2
	default:
		return 1
	}
}

// maxDays bounds -days well below the range of time.Duration.
const maxDays = 100 * 365

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("certs", flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() {
		fmt.Fprint(fset.Output(), "usage: go run ./scripts/certs -out DIR -hosts name[=host[+host...]],... [-days N] [-force]\n\n"+
			"Creates a development CA in DIR (or reuses the one there) and a certificate\n"+
			"and key for each member, for the nodes' -tls-ca, -tls-cert and -tls-key flags.\n\n")
		fset.PrintDefaults()
	}
	out := fset.String("out", "", "`directory` for the CA, certificates and keys; created with mode 0700 if missing (required)")
	hosts := fset.String("hosts", "", "comma-separated members as `name[=host[+host...]]`, e.g. gotham=198.18.0.11,dispatch=198.18.0.10+dispatch.example;\n"+
		"each host is an IP address or DNS name peers dial the member by (required)")
	days := fset.Int("days", 365, "validity in `days` of a new CA and of the certificates, never beyond the CA's")
	force := fset.Bool("force", false, "replace existing member certificates and keys (the CA is never replaced)")
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err: err, printed: true}
	}
	switch {
	case fset.NArg() > 0:
		return usagef("unexpected argument %q", fset.Arg(0))
	case *out == "":
		return usagef("-out is required: the directory to write the files to")
	case *days <= 0 || *days > maxDays:
		return usagef("-days %d: want 1 to %d", *days, maxDays)
	}
	nodes, err := parseHosts(*hosts)
	if err != nil {
		return usageError{err: err}
	}
	if err := devcerts.ValidateNodes(nodes); err != nil {
		return usagef("-hosts: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	res, err := devcerts.Generate(*out, nodes, devcerts.Options{
		Validity: time.Duration(*days) * 24 * time.Hour,
		Force:    *force,
	})
	for _, p := range res.Written {
		fmt.Fprintf(stdout, "wrote %s (%s)\n", p, describe(res, p))
	}
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w; pass -force to replace them", err)
		}
		return err
	}
	if res.CAReused {
		fmt.Fprintf(stdout, "signed with the existing CA %s\n", res.CACert)
	}

	fmt.Fprintln(stdout, "start each node with:")
	width := 0
	for _, n := range res.Nodes {
		width = max(width, len(n.Name))
	}
	for _, n := range res.Nodes {
		fmt.Fprintf(stdout, "  %-*s  -tls-ca %s -tls-cert %s -tls-key %s\n", width+1, n.Name+":", res.CACert, n.Cert, n.Key)
	}
	return nil
}

// describe says what the file at path, which Generate wrote, holds.
func describe(res devcerts.Result, path string) string {
	switch path {
	case res.CACert:
		return "CA certificate, for every node"
	case res.CAKey:
		return "CA private key: keep it secret, and keep it to add members later"
	}
	for _, n := range res.Nodes {
		switch path {
		case n.Cert:
			return fmt.Sprintf("certificate of %s, valid until %s", n.Name, n.NotAfter.Format(time.DateOnly))
		case n.Key:
			return "private key of " + n.Name
		}
	}
	return "?"
}

// parseHosts parses the value of -hosts: comma-separated
// name[=host[+host...]] entries. It checks the syntax only; names and hosts
// are checked by devcerts.
func parseHosts(s string) ([]devcerts.Node, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("-hosts is required: give the members as name[=host[+host...]],...")
	}
	var nodes []devcerts.Node
	for i, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return nil, fmt.Errorf("-hosts %q: entry %d is empty", s, i+1)
		}
		name, list, hasHosts := strings.Cut(entry, "=")
		n := devcerts.Node{Name: strings.TrimSpace(name)}
		if n.Name == "" {
			return nil, fmt.Errorf("-hosts entry %q: no name before '='", entry)
		}
		if hasHosts {
			if strings.TrimSpace(list) == "" {
				return nil, fmt.Errorf("-hosts entry %q: no host after '='", entry)
			}
			for _, h := range strings.Split(list, "+") {
				if h = strings.TrimSpace(h); h == "" {
					return nil, fmt.Errorf("-hosts entry %q: empty host (a stray '+')", entry)
				}
				n.Hosts = append(n.Hosts, h)
			}
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}
