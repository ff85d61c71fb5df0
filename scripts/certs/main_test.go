package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/superhero-cluster/superhero/internal/tlsconf"
)

func runCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// nodeFlags returns the flags the output says to start name with.
func nodeFlags(t *testing.T, stdout, name string) []string {
	t.Helper()
	for _, line := range strings.Split(stdout, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name+":" {
			return f[1:]
		}
	}
	t.Fatalf("no flags for %s in output:\n%s", name, stdout)
	return nil
}

// load loads the TLS files of the flags as a node would.
func load(t *testing.T, args []string) *tlsconf.Bundle {
	t.Helper()
	var files tlsconf.Files
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	files.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	b, err := files.Load()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	stdout, stderr, err := runCmd(t, "-out", dir, "-hosts", "gotham=198.18.0.11, dispatch=198.18.0.10+dispatch.example,etcd", "-days", "30")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	t.Log("\n" + stdout)
	for _, name := range []string{"ca.pem", "ca-key.pem", "gotham.pem", "gotham-key.pem", "dispatch.pem", "dispatch-key.pem", "etcd.pem", "etcd-key.pem"} {
		p := filepath.Join(dir, name)
		if !strings.Contains(stdout, "wrote "+p+" (") {
			t.Errorf("output does not report %s", p)
		}
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}

	want := "-tls-ca " + filepath.Join(dir, "ca.pem") + " -tls-cert " + filepath.Join(dir, "gotham.pem") + " -tls-key " + filepath.Join(dir, "gotham-key.pem")
	if !strings.Contains(stdout, want) {
		t.Errorf("output lacks %q", want)
	}
	gotham := load(t, nodeFlags(t, stdout, "gotham"))
	if err := gotham.Leaf().VerifyHostname("198.18.0.11"); err != nil {
		t.Error(err)
	}
	dispatch := load(t, nodeFlags(t, stdout, "dispatch"))
	for _, h := range []string{"198.18.0.10", "dispatch.example", "dispatch", "127.0.0.1"} {
		if err := dispatch.Leaf().VerifyHostname(h); err != nil {
			t.Error(err)
		}
	}
	if d := dispatch.Leaf().NotAfter.Sub(dispatch.Leaf().NotBefore).Hours(); d < 30*24 || d > 31*24 {
		t.Errorf("validity %v hours, want 30 days (-days 30)", d)
	}
	load(t, nodeFlags(t, stdout, "etcd"))

	// Adding a member later: the CA is reused, the others are untouched.
	caBefore, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	stdout, _, err = runCmd(t, "-out", dir, "-hosts", "capitol=198.18.0.13")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "existing CA") || strings.Contains(stdout, "wrote "+filepath.Join(dir, "ca.pem")) {
		t.Errorf("second run did not report reusing the CA:\n%s", stdout)
	}
	if caAfter, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); !bytes.Equal(caBefore, caAfter) {
		t.Error("ca.pem changed")
	}
	capitol := load(t, nodeFlags(t, stdout, "capitol"))
	if _, err := capitol.Leaf().Verify(x509.VerifyOptions{Roots: gotham.CAPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("capitol is not trusted by gotham: %v", err)
	}

	// Existing files need -force.
	_, _, err = runCmd(t, "-out", dir, "-hosts", "gotham=198.18.0.11")
	if err == nil || !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "-force") {
		t.Fatalf("err = %v, want a refusal mentioning -force", err)
	}
	if c := exitCode(err); c != 1 {
		t.Errorf("exit status %d, want 1", c)
	}
	if _, _, err := runCmd(t, "-out", dir, "-hosts", "gotham=198.18.0.11", "-force"); err != nil {
		t.Fatalf("-force: %v", err)
	}
}

func TestRunUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no hosts", []string{}, "-hosts is required"},
		{"blank hosts", []string{"-hosts", " "}, "-hosts is required"},
		{"empty entry", []string{"-hosts", "gotham,,capitol"}, "entry 2 is empty"},
		{"trailing comma", []string{"-hosts", "gotham,"}, "entry 2 is empty"},
		{"no name", []string{"-hosts", "=198.18.0.11"}, "no name"},
		{"no host", []string{"-hosts", "gotham="}, "no host"},
		{"stray plus", []string{"-hosts", "gotham=198.18.0.11+"}, "empty host"},
		{"bad name", []string{"-hosts", "../gotham=198.18.0.11"}, "path separator"},
		{"reserved name", []string{"-hosts", "ca"}, "reserved"},
		{"name twice", []string{"-hosts", "gotham,gotham"}, "twice"},
		{"host with port", []string{"-hosts", "gotham=198.18.0.11:9000"}, "neither an IP address nor a DNS name"},
		{"no out", []string{"-out", "", "-hosts", "gotham"}, "-out is required"},
		{"zero days", []string{"-days", "0", "-hosts", "gotham"}, "-days 0"},
		{"too many days", []string{"-days", "100000", "-hosts", "gotham"}, "-days 100000"},
		{"extra argument", []string{"-hosts", "gotham", "metropolis"}, `unexpected argument "metropolis"`},
		{"unknown flag", []string{"-host", "gotham"}, "-host"},
		{"bad -days", []string{"-days", "x"}, "-days"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "certs")
			args := append([]string{"-out", dir}, tt.args...)
			_, _, err := runCmd(t, args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if c := exitCode(err); c != 2 {
				t.Errorf("exit status %d, want 2", c)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a usage error created %s", dir)
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	_, stderr, err := runCmd(t, "-h")
	if c := exitCode(err); c != 0 {
		t.Errorf("-h: exit status %d (err %v), want 0", c, err)
	}
	for _, want := range []string{"-hosts", "-out", "-force", "-days", "name[=host[+host...]]"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("usage lacks %q:\n%s", want, stderr)
		}
	}
}
