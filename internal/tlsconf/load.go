package tlsconf

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Load reads the three files and checks that they form a usable member
// configuration: every file is set, exists and holds PEM data of the
// expected kind; the CA file holds only CA certificates, none expired; the
// key matches the certificate; the certificate is valid now, is signed by
// the CA and allows both server and client authentication.
//
// Its errors name the flag and the file at fault. Load checks the validity
// period once; a certificate that expires while the member runs makes its
// handshakes fail from then on.
func (f Files) Load() (*Bundle, error) {
	var missing []string
	for _, m := range []struct{ flag, value string }{{"-tls-ca", f.CA}, {"-tls-cert", f.Cert}, {"-tls-key", f.Key}} {
		if m.value == "" {
			missing = append(missing, m.flag)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("mutual TLS needs -tls-ca, -tls-cert and -tls-key; not set: %s", strings.Join(missing, ", "))
	}

	now := time.Now()
	roots, err := loadCA(f.CA, now)
	if err != nil {
		return nil, err
	}
	chain, err := readCerts("-tls-cert", f.Cert)
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	key, err := readKey(f.Key)
	if err != nil {
		return nil, err
	}
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("-tls-key %s does not match the certificate in -tls-cert %s", f.Key, f.Cert)
	}

	name := leaf.Subject.CommonName
	switch {
	case now.Before(leaf.NotBefore):
		return nil, fmt.Errorf("-tls-cert %s: certificate %q is not valid before %s (is this machine's clock right?)",
			f.Cert, name, leaf.NotBefore.Format(time.RFC3339))
	case now.After(leaf.NotAfter):
		return nil, fmt.Errorf("-tls-cert %s: certificate %q expired at %s", f.Cert, name, leaf.NotAfter.Format(time.RFC3339))
	}

	intermediates := x509.NewCertPool()
	for _, c := range chain[1:] {
		intermediates.AddCert(c)
	}
	for _, u := range []struct {
		usage x509.ExtKeyUsage
		name  string
	}{{x509.ExtKeyUsageServerAuth, "server"}, {x509.ExtKeyUsageClientAuth, "client"}} {
		_, err := leaf.Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: intermediates,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{u.usage},
		})
		var unknown x509.UnknownAuthorityError
		var invalid x509.CertificateInvalidError
		switch {
		case err == nil:
		case errors.As(err, &unknown):
			return nil, fmt.Errorf("-tls-cert %s: certificate %q is not signed by the CA in -tls-ca %s", f.Cert, name, f.CA)
		case errors.As(err, &invalid) && invalid.Reason == x509.IncompatibleUsage:
			return nil, fmt.Errorf("-tls-cert %s: certificate %q does not allow TLS %s authentication; a member's certificate needs the extended key usages ServerAuth and ClientAuth",
				f.Cert, name, u.name)
		default:
			return nil, fmt.Errorf("-tls-cert %s: %w", f.Cert, err)
		}
	}

	b := &Bundle{files: f, roots: roots, cert: tls.Certificate{PrivateKey: key, Leaf: leaf}}
	for _, c := range chain {
		b.cert.Certificate = append(b.cert.Certificate, c.Raw)
	}
	return b, nil
}

// loadCA returns a pool of the CA certificates in the file path.
func loadCA(path string, now time.Time) (*x509.CertPool, error) {
	cas, err := readCerts("-tls-ca", path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		name := c.Subject.CommonName
		switch {
		case !c.IsCA:
			return nil, fmt.Errorf("-tls-ca %s: certificate %q is not a CA certificate (is it a member's certificate?)", path, name)
		case now.Before(c.NotBefore):
			return nil, fmt.Errorf("-tls-ca %s: CA certificate %q is not valid before %s (is this machine's clock right?)",
				path, name, c.NotBefore.Format(time.RFC3339))
		case now.After(c.NotAfter):
			return nil, fmt.Errorf("-tls-ca %s: CA certificate %q expired at %s", path, name, c.NotAfter.Format(time.RFC3339))
		}
		pool.AddCert(c)
	}
	return pool, nil
}

// readCerts returns the certificates in the PEM file path, at least one,
// in the order of the file. flag names the flag that set path.
func readCerts(flag, path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	var certs []*x509.Certificate
	var others []string
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			others = append(others, block.Type)
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s %s: certificate %d: %w", flag, path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	switch {
	case len(certs) > 0:
		return certs, nil
	case len(others) > 0:
		return nil, fmt.Errorf("%s %s: no PEM certificate, only %s", flag, path, strings.Join(others, ", "))
	default:
		return nil, fmt.Errorf("%s %s: not a PEM file", flag, path)
	}
}

// readKey returns the first private key in the PEM file path.
func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-tls-key: %w", err)
	}
	var others []string
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if strings.HasSuffix(block.Type, "PRIVATE KEY") && (block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] != "") {
			return nil, fmt.Errorf("-tls-key %s: the key is encrypted; give an unencrypted key", path)
		}
		var key any
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			others = append(others, block.Type)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("-tls-key %s: %w", path, err)
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("-tls-key %s: unsupported key type %T", path, key)
		}
		return s, nil
	}
	switch {
	case len(others) > 0:
		return nil, fmt.Errorf("-tls-key %s: no PEM private key, only %s", path, strings.Join(others, ", "))
	default:
		return nil, fmt.Errorf("-tls-key %s: not a PEM file", path)
	}
}
