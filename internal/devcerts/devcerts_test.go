package devcerts

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cert
}

// verify checks that the certificate at path chains to the CA in dir for
// both server and client authentication.
func verify(t *testing.T, dir, path string) *x509.Certificate {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, filepath.Join(dir, CAFile)))
	cert := readCert(t, path)
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("%s: usage %v: %v", path, usage, err)
		}
	}
	return cert
}

func TestGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	res, err := Generate(dir, []Node{
		{Name: "gotham", Hosts: []string{"198.18.0.11", "gotham.example", "2001:db8::11"}},
		{Name: "dispatch"},
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"),
		filepath.Join(dir, "gotham.pem"), filepath.Join(dir, "gotham-key.pem"),
		filepath.Join(dir, "dispatch.pem"), filepath.Join(dir, "dispatch-key.pem"),
	}
	if !slices.Equal(res.Written, want) {
		t.Errorf("Written = %q, want %q", res.Written, want)
	}
	if res.CAReused {
		t.Error("CAReused = true for a new directory")
	}
	if res.CACert != want[0] || res.CAKey != want[1] {
		t.Errorf("CA files = %s, %s", res.CACert, res.CAKey)
	}
	if len(res.Nodes) != 2 || res.Nodes[0].Name != "gotham" || res.Nodes[0].Cert != want[2] || res.Nodes[0].Key != want[3] {
		t.Errorf("Nodes = %+v", res.Nodes)
	}

	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("directory mode = %v, want 0700", st.Mode().Perm())
	}
	for _, p := range []string{res.CAKey, res.Nodes[0].Key, res.Nodes[1].Key} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode = %v, want 0600", p, st.Mode().Perm())
		}
	}

	ca := readCert(t, res.CACert)
	if !ca.IsCA {
		t.Error("ca.pem is not a CA certificate")
	}
	gotham := verify(t, dir, res.Nodes[0].Cert)
	if !slices.Equal(gotham.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ExtKeyUsage = %v, want ServerAuth and ClientAuth", gotham.ExtKeyUsage)
	}
	if gotham.Subject.CommonName != "gotham" {
		t.Errorf("CommonName = %q", gotham.Subject.CommonName)
	}
	for _, h := range []string{"gotham", "gotham.example", "localhost", "198.18.0.11", "127.0.0.1", "::1", "2001:db8::11"} {
		if err := gotham.VerifyHostname(h); err != nil {
			t.Errorf("gotham certificate: %v", err)
		}
	}
	if err := gotham.VerifyHostname("198.18.0.12"); err == nil {
		t.Error("gotham certificate is valid for 198.18.0.12")
	}
	if len(gotham.DNSNames) != 3 || len(gotham.IPAddresses) != 4 {
		t.Errorf("SANs = %q %v, want 3 DNS names and 4 IP addresses", gotham.DNSNames, gotham.IPAddresses)
	}
	if !gotham.NotAfter.Equal(res.Nodes[0].NotAfter) {
		t.Errorf("NotAfter = %v, Result says %v", gotham.NotAfter, res.Nodes[0].NotAfter)
	}
	if d := gotham.NotAfter.Sub(gotham.NotBefore); d != DefaultValidity+ClockSkew {
		t.Errorf("validity = %v, want %v", d, DefaultValidity+ClockSkew)
	}

	dispatch := verify(t, dir, res.Nodes[1].Cert)
	if err := dispatch.VerifyHostname("dispatch"); err != nil {
		t.Error(err)
	}
	if !slices.ContainsFunc(dispatch.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.IPv6loopback) }) {
		t.Errorf("dispatch IPs = %v, want ::1 among them", dispatch.IPAddresses)
	}
}

func TestGenerateReusesCA(t *testing.T) {
	dir := t.TempDir()
	if _, err := Generate(dir, []Node{{Name: "gotham"}}, Options{}); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		t.Fatal(err)
	}
	caKeyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}

	res, err := Generate(dir, []Node{{Name: "capitol", Hosts: []string{"198.18.0.13"}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.CAReused {
		t.Error("CAReused = false")
	}
	want := []string{filepath.Join(dir, "capitol.pem"), filepath.Join(dir, "capitol-key.pem")}
	if !slices.Equal(res.Written, want) {
		t.Errorf("Written = %q, want %q", res.Written, want)
	}
	for name, old := range map[string][]byte{CAFile: caPEM, CAKeyFile: caKeyPEM} {
		now, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(now, old) {
			t.Errorf("%s changed", name)
		}
	}
	verify(t, dir, res.Nodes[0].Cert)
	verify(t, dir, filepath.Join(dir, "gotham.pem"))
}

func TestGenerateCapsValidityAtCA(t *testing.T) {
	dir := t.TempDir()
	if _, err := Generate(dir, []Node{{Name: "gotham"}}, Options{Validity: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	res, err := Generate(dir, []Node{{Name: "capitol"}}, Options{Validity: 10 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ca := readCert(t, res.CACert)
	if got := readCert(t, res.Nodes[0].Cert).NotAfter; !got.Equal(ca.NotAfter) {
		t.Errorf("NotAfter = %v, want the CA's %v", got, ca.NotAfter)
	}
}

func TestGenerateExpiredCA(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if _, err := Generate(dir, []Node{{Name: "gotham"}}, Options{Validity: time.Hour, Now: now.Add(-2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	_, err := Generate(dir, []Node{{Name: "capitol"}}, Options{})
	if err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), filepath.Join(dir, CAFile)) {
		t.Fatalf("err = %v, want the expired CA named", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "capitol.pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("capitol.pem written with an expired CA: %v", err)
	}
}

func TestGenerateRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	nodes := []Node{{Name: "gotham"}}
	if _, err := Generate(dir, nodes, Options{}); err != nil {
		t.Fatal(err)
	}
	certPath := filepath.Join(dir, "gotham.pem")
	keyPath := filepath.Join(dir, "gotham-key.pem")
	oldCert, _ := os.ReadFile(certPath)
	oldKey, _ := os.ReadFile(keyPath)

	// A new node next to an existing one: nothing is written either.
	_, err := Generate(dir, []Node{{Name: "capitol"}, {Name: "gotham"}}, Options{})
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("err = %v, want fs.ErrExist", err)
	}
	if !strings.Contains(err.Error(), certPath) || !strings.Contains(err.Error(), keyPath) {
		t.Errorf("err = %v, want both gotham files named", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "capitol.pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("capitol.pem written although gotham's files made Generate fail: %v", err)
	}
	if now, _ := os.ReadFile(certPath); !bytes.Equal(now, oldCert) {
		t.Error("gotham.pem overwritten")
	}

	// Only the key left over also counts.
	if err := os.Remove(certPath); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(dir, nodes, Options{}); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("with only the key present: err = %v, want fs.ErrExist", err)
	}

	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Generate(dir, nodes, Options{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.CAReused {
		t.Error("Force replaced the CA")
	}
	if now, _ := os.ReadFile(keyPath); bytes.Equal(now, oldKey) {
		t.Error("Force did not replace gotham-key.pem")
	}
	if st, err := os.Stat(keyPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("replaced key: mode %v, err %v; want 0600", st.Mode().Perm(), err)
	}
	verify(t, dir, certPath)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 4 {
		t.Errorf("directory holds %d files, want 4 (no temporary files left)", len(entries))
	}
}

func TestGenerateHalfCA(t *testing.T) {
	for _, missing := range []string{CAFile, CAKeyFile} {
		t.Run(missing, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Generate(dir, []Node{{Name: "gotham"}}, Options{}); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, missing)); err != nil {
				t.Fatal(err)
			}
			_, err := Generate(dir, []Node{{Name: "capitol"}}, Options{Force: true})
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, missing)) {
				t.Fatalf("err = %v, want %s named", err, missing)
			}
			if _, err := os.Stat(filepath.Join(dir, missing)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s recreated next to the other half of the old CA", missing)
			}
		})
	}
}

func TestGenerateBadInput(t *testing.T) {
	tests := []struct {
		name  string
		nodes []Node
		want  string
	}{
		{"no nodes", nil, "no nodes"},
		{"empty name", []Node{{Name: ""}}, "empty node name"},
		{"parent dir", []Node{{Name: "../gotham"}}, "path separator"},
		{"slash", []Node{{Name: "a/b"}}, "path separator"},
		{"backslash", []Node{{Name: `a\b`}}, "path separator"},
		{"space", []Node{{Name: "a b"}}, "letters, digits"},
		{"dot", []Node{{Name: "gotham.pem"}}, "letters, digits"},
		{"leading dash", []Node{{Name: "-gotham"}}, "letters, digits"},
		{"too long", []Node{{Name: strings.Repeat("a", 64)}}, "at most 63"},
		{"ca", []Node{{Name: "CA"}}, "reserved"},
		{"key suffix", []Node{{Name: "gotham-key"}}, `"-key"`},
		{"twice", []Node{{Name: "gotham"}, {Name: "Gotham"}}, "twice"},
		{"host with port", []Node{{Name: "gotham", Hosts: []string{"198.18.0.11:8080"}}}, `"198.18.0.11:8080"`},
		{"bad IP", []Node{{Name: "gotham", Hosts: []string{"198.18.0.256"}}}, "neither an IP address nor a DNS name"},
		{"bad DNS", []Node{{Name: "gotham", Hosts: []string{"goth_am.example"}}}, "neither"},
		{"empty host", []Node{{Name: "gotham", Hosts: []string{""}}}, "neither"},
		{"zone", []Node{{Name: "gotham", Hosts: []string{"fe80::1%eth0"}}}, "zone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "certs")
			_, err := Generate(dir, tt.nodes, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("bad input created %s", dir)
			}
		})
	}
}

func TestGenerateBadOptions(t *testing.T) {
	if _, err := Generate("", []Node{{Name: "gotham"}}, Options{}); err == nil {
		t.Error("no error for an empty directory name")
	}
	if _, err := Generate(t.TempDir(), []Node{{Name: "gotham"}}, Options{Validity: -time.Hour}); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Errorf("negative validity: err = %v", err)
	}
}
