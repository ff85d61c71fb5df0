package tlsconf

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/superhero-cluster/superhero/internal/devcerts"
)

func TestLoad(t *testing.T) {
	res := generate(t, t.TempDir(), devcerts.Options{}, "gotham")
	f := files(res, 0)
	b, err := f.Load()
	if err != nil {
		t.Fatal(err)
	}
	if b.Files() != f {
		t.Errorf("Files() = %+v, want %+v", b.Files(), f)
	}
	if cn := b.Leaf().Subject.CommonName; cn != "gotham" {
		t.Errorf("Leaf() is %q, want gotham", cn)
	}
	if !b.Leaf().NotAfter.Equal(res.Nodes[0].NotAfter) {
		t.Errorf("Leaf().NotAfter = %v, want %v", b.Leaf().NotAfter, res.Nodes[0].NotAfter)
	}
	if _, err := b.Leaf().Verify(x509.VerifyOptions{Roots: b.CAPool()}); err != nil {
		t.Errorf("Leaf() does not verify against CAPool(): %v", err)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// readPEM returns the first PEM block of the file path.
func readPEM(t *testing.T, path string) *pem.Block {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	return block
}

// issueServerOnly signs, with the CA of res, a certificate for gotham that
// allows only server authentication, and returns its files.
func issueServerOnly(t *testing.T, res devcerts.Result) Files {
	t.Helper()
	ca, err := x509.ParseCertificate(readPEM(t, res.CACert).Bytes)
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := x509.ParsePKCS8PrivateKey(readPEM(t, res.CAKey).Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "gotham"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"gotham"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	return Files{
		CA:   res.CACert,
		Cert: writeFile(t, dir, "server-only.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))),
		Key:  writeFile(t, dir, "server-only-key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))),
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	res := generate(t, dir, devcerts.Options{}, "gotham", "metropolis")
	gotham, metropolis := files(res, 0), files(res, 1)
	other := files(generate(t, t.TempDir(), devcerts.Options{}, "gotham"), 0)

	now := time.Now()
	// Issued by the cluster's CA: one expired, one valid only from tomorrow.
	expired := files(generate(t, dir, devcerts.Options{Now: now.Add(-48 * time.Hour), Validity: time.Hour}, "expired"), 0)
	future := files(generate(t, dir, devcerts.Options{Now: now.Add(48 * time.Hour)}, "future"), 0)
	// A CA that has expired, with a member it issued.
	oldCA := files(generate(t, t.TempDir(), devcerts.Options{Now: now.Add(-48 * time.Hour), Validity: time.Hour}, "gotham"), 0)

	junk := writeFile(t, t.TempDir(), "junk.pem", "not a certificate\n")
	encrypted := writeFile(t, t.TempDir(), "encrypted.pem",
		string(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}})))
	missing := filepath.Join(t.TempDir(), "missing.pem")

	with := func(f Files, edit func(*Files)) Files { edit(&f); return f }
	tests := []struct {
		name     string
		files    Files
		want     []string // substrings of the error
		notExist bool     // the error wraps fs.ErrNotExist
	}{
		{"nothing set", Files{}, []string{"not set: -tls-ca, -tls-cert, -tls-key"}, false},
		{"only CA", Files{CA: gotham.CA}, []string{"not set: -tls-cert, -tls-key"}, false},
		{"no key", with(gotham, func(f *Files) { f.Key = "" }), []string{"not set: -tls-key"}, false},
		{"CA missing", with(gotham, func(f *Files) { f.CA = missing }), []string{"-tls-ca", missing}, true},
		{"cert missing", with(gotham, func(f *Files) { f.Cert = missing }), []string{"-tls-cert", missing}, true},
		{"key missing", with(gotham, func(f *Files) { f.Key = missing }), []string{"-tls-key", missing}, true},
		{"CA not PEM", with(gotham, func(f *Files) { f.CA = junk }), []string{"-tls-ca " + junk, "not a PEM file"}, false},
		{"cert not PEM", with(gotham, func(f *Files) { f.Cert = junk }), []string{"-tls-cert " + junk, "not a PEM file"}, false},
		{"key not PEM", with(gotham, func(f *Files) { f.Key = junk }), []string{"-tls-key " + junk, "not a PEM file"}, false},
		{"cert and key swapped", with(gotham, func(f *Files) { f.Cert, f.Key = f.Key, f.Cert }),
			[]string{"-tls-cert " + gotham.Key, "no PEM certificate, only PRIVATE KEY"}, false},
		{"member certificate as CA", with(gotham, func(f *Files) { f.CA = metropolis.Cert }),
			[]string{"-tls-ca " + metropolis.Cert, `"metropolis" is not a CA certificate`}, false},
		{"encrypted key", with(gotham, func(f *Files) { f.Key = encrypted }), []string{"-tls-key " + encrypted, "encrypted"}, false},
		{"key of another member", with(gotham, func(f *Files) { f.Key = metropolis.Key }),
			[]string{"-tls-key " + metropolis.Key, "does not match", "-tls-cert " + gotham.Cert}, false},
		{"certificate of another CA", with(other, func(f *Files) { f.CA = gotham.CA }),
			[]string{"-tls-cert " + other.Cert, "not signed by the CA in -tls-ca " + gotham.CA}, false},
		{"expired", expired, []string{"-tls-cert " + expired.Cert, `"expired" expired at`}, false},
		{"not yet valid", future, []string{"-tls-cert " + future.Cert, "not valid before"}, false},
		{"CA expired", oldCA, []string{"-tls-ca " + oldCA.CA, "expired at"}, false},
		{"server authentication only", issueServerOnly(t, res), []string{"server-only.pem", "does not allow TLS client authentication"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.files.Load()
			if err == nil {
				t.Fatalf("Load succeeded: %v", b.Leaf().Subject)
			}
			t.Log(err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if got := errors.Is(err, fs.ErrNotExist); got != tt.notExist {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = %v, want %v", got, tt.notExist)
			}
		})
	}
}

// The server-only certificate of TestLoadErrors would indeed be refused
// by a peer: Load reports what the handshake would otherwise find later.
func TestServerOnlyCertificateRefusedAsClient(t *testing.T) {
	res := generate(t, t.TempDir(), devcerts.Options{}, "gotham", "metropolis")
	gotham := mustLoad(t, files(res, 0))
	f := issueServerOnly(t, res)
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := mustLoad(t, files(res, 1)).Client("")
	cfg.Certificates = []tls.Certificate{cert}
	refused(t, gotham.Server(), cfg)
}
