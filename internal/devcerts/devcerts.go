// Package devcerts creates a small certificate authority and one
// certificate per cluster member, for development and test clusters that
// run with mutual TLS (see package tlsconf, which loads the files).
//
// Generate writes these files to a directory:
//
//	ca.pem          the CA certificate; every member trusts it (-tls-ca)
//	ca-key.pem      the CA private key; keep it to add members later
//	<name>.pem      a member's certificate (-tls-cert)
//	<name>-key.pem  a member's private key (-tls-key)
//
// All keys are ECDSA P-256, stored unencrypted as PKCS #8 with file mode
// 0600. Every member certificate is valid for both TLS server and TLS
// client authentication (extended key usages ServerAuth and ClientAuth),
// because a member both accepts connections from its peers and dials them.
//
// The CA is meant for development: its key lies unencrypted next to the
// certificates it signs, and anyone holding it can mint a member.
package devcerts

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Names of the CA files in the output directory.
const (
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"
)

// DefaultValidity is the validity of the CA and of the member certificates
// when Options.Validity is zero.
const DefaultValidity = 365 * 24 * time.Hour

// ClockSkew is how long before their issue time certificates become valid,
// so that a member whose clock is a little behind accepts them.
const ClockSkew = time.Hour

// organization is the subject organization of every certificate issued.
const organization = "superhero dev"

// A Node is a cluster member to issue a certificate for.
type Node struct {
	// Name names the member and its files (<Name>.pem, <Name>-key.pem).
	// It is made of ASCII letters, digits and '-', neither first nor last,
	// at most 63 characters; it is also a DNS name in the certificate.
	// "ca" and names ending in "-key" are reserved.
	Name string

	// Hosts are the IP addresses and DNS names the member is reached by;
	// each becomes a subject alternative name of its certificate. The
	// certificate always also holds Name, "localhost", 127.0.0.1 and ::1.
	Hosts []string
}

// Options adjusts Generate. The zero value is ready to use.
type Options struct {
	// Validity is how long a new CA and the member certificates are
	// valid, counted from their issue time. Zero means DefaultValidity.
	// A member certificate never outlives the CA that signs it.
	Validity time.Duration

	// Force replaces existing member certificates and keys. Without it
	// Generate refuses to overwrite them. It never replaces the CA.
	Force bool

	// Now is the issue time. Zero means time.Now(). Tests set it to
	// obtain certificates that are expired or not yet valid.
	Now time.Time
}

// Result reports what Generate did.
type Result struct {
	// CACert and CAKey are the paths of the CA certificate and key.
	CACert, CAKey string

	// CAReused reports whether an existing CA signed the certificates;
	// if false Generate created the CA.
	CAReused bool

	// Nodes holds the files of each member, in the order given.
	Nodes []NodeFiles

	// Written lists every file written, in the order written.
	Written []string
}

// NodeFiles are the files of one member.
type NodeFiles struct {
	Name      string
	Cert, Key string    // paths of the certificate and of its private key
	NotAfter  time.Time // end of the certificate's validity
}

// Generate issues a certificate and key for every node, signed by the CA
// in dir, and writes them to dir. If dir holds no ca.pem and ca-key.pem it
// creates a new CA there first; if it holds both, that CA signs the new
// certificates, so a member can be added to a running cluster. dir is
// created with mode 0700 if it does not exist.
//
// Generate checks all its input before it writes anything: invalid node
// names or hosts, a CA with only one of its two files, an expired CA, and
// existing member files without opts.Force are errors. Existing member
// files are reported with an error that wraps fs.ErrExist.
func Generate(dir string, nodes []Node, opts Options) (Result, error) {
	if dir == "" {
		return Result{}, errors.New("no output directory given")
	}
	if len(nodes) == 0 {
		return Result{}, errors.New("no nodes given")
	}
	if err := ValidateNodes(nodes); err != nil {
		return Result{}, err
	}
	if opts.Validity < 0 {
		return Result{}, fmt.Errorf("validity %v is negative", opts.Validity)
	}
	if opts.Validity == 0 {
		opts.Validity = DefaultValidity
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}

	res := Result{
		CACert: filepath.Join(dir, CAFile),
		CAKey:  filepath.Join(dir, CAKeyFile),
	}
	ca, err := loadCA(res.CACert, res.CAKey, opts.Now)
	if err != nil {
		return Result{}, err
	}
	res.CAReused = ca != nil

	var existing []string
	for _, n := range nodes {
		f := NodeFiles{
			Name: n.Name,
			Cert: filepath.Join(dir, n.Name+".pem"),
			Key:  filepath.Join(dir, n.Name+"-key.pem"),
		}
		for _, p := range []string{f.Cert, f.Key} {
			switch _, err := os.Lstat(p); {
			case err == nil:
				existing = append(existing, p)
			case !errors.Is(err, fs.ErrNotExist):
				return Result{}, err
			}
		}
		res.Nodes = append(res.Nodes, f)
	}
	if len(existing) > 0 && !opts.Force {
		return Result{}, fmt.Errorf("refusing to overwrite %s: %w", strings.Join(existing, ", "), fs.ErrExist)
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Result{}, err
	}
	if ca == nil {
		ca, err = newCA(opts.Now, opts.Validity)
		if err != nil {
			return Result{}, err
		}
		if err := writePEM(res.CACert, "CERTIFICATE", ca.cert.Raw, 0o644, false); err != nil {
			return res, err
		}
		res.Written = append(res.Written, res.CACert)
		if err := writeKey(res.CAKey, ca.key, false); err != nil {
			return res, err
		}
		res.Written = append(res.Written, res.CAKey)
	}

	for i, n := range nodes {
		f := &res.Nodes[i]
		der, key, err := ca.issue(n, opts.Now, opts.Validity)
		if err != nil {
			return res, fmt.Errorf("node %s: %w", n.Name, err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return res, fmt.Errorf("node %s: %w", n.Name, err)
		}
		f.NotAfter = cert.NotAfter
		if err := writePEM(f.Cert, "CERTIFICATE", der, 0o644, opts.Force); err != nil {
			return res, err
		}
		res.Written = append(res.Written, f.Cert)
		if err := writeKey(f.Key, key, opts.Force); err != nil {
			return res, err
		}
		res.Written = append(res.Written, f.Key)
	}
	return res, nil
}

// ValidateNodes reports the first node whose name or hosts Generate would
// reject, or a name given twice (names are compared without regard to
// case, as DNS names and some file systems compare them).
func ValidateNodes(nodes []Node) error {
	seen := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		if err := validateName(n.Name); err != nil {
			return err
		}
		lower := strings.ToLower(n.Name)
		if seen[lower] {
			return fmt.Errorf("node name %q given twice", n.Name)
		}
		seen[lower] = true
		for _, h := range n.Hosts {
			if _, err := parseHost(h); err != nil {
				return fmt.Errorf("node %s: %w", n.Name, err)
			}
		}
	}
	return nil
}

func validateName(name string) error {
	switch {
	case name == "":
		return errors.New("empty node name")
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("node name %q contains a path separator; use only letters, digits and '-'", name)
	case !isLabel(name):
		return fmt.Errorf("node name %q: use only letters, digits and '-' (not first or last), at most 63 characters", name)
	case strings.EqualFold(name, "ca"):
		return fmt.Errorf("node name %q is reserved for the CA files", name)
	case strings.HasSuffix(strings.ToLower(name), "-key"):
		return fmt.Errorf("node name %q must not end in \"-key\": its certificate would be named like a key file", name)
	}
	return nil
}

// isLabel reports whether s is a DNS label: 1 to 63 ASCII letters, digits
// and hyphens, not starting or ending with a hyphen.
func isLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// A san is a subject alternative name: an IP address or else a DNS name.
type san struct {
	ip  netip.Addr
	dns string
}

func parseHost(h string) (san, error) {
	if ip, err := netip.ParseAddr(h); err == nil {
		if ip.Zone() != "" {
			return san{}, fmt.Errorf("host %q: an IP address in a certificate cannot have a zone", h)
		}
		return san{ip: ip.Unmap()}, nil
	}
	labels := strings.Split(h, ".")
	ok := len(h) <= 253
	for _, l := range labels {
		ok = ok && isLabel(l)
	}
	// A numeric last label is a mistyped IP address (no top-level domain
	// is numeric), not a DNS name.
	if last := labels[len(labels)-1]; ok && strings.Trim(last, "0123456789") == "" {
		ok = false
	}
	if !ok {
		return san{}, fmt.Errorf("host %q is neither an IP address nor a DNS name", h)
	}
	return san{dns: strings.ToLower(h)}, nil
}

// A ca is a certificate authority that signs member certificates.
type ca struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// loadCA returns the CA in certPath and keyPath, nil if neither file
// exists, or an error if only one does, if they do not form a CA, or if it
// has expired at now.
func loadCA(certPath, keyPath string, now time.Time) (*ca, error) {
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return nil, nil
	case errors.Is(keyErr, fs.ErrNotExist):
		return nil, fmt.Errorf("%s exists but %s does not; restore the CA key, or remove %s to create a new CA", certPath, keyPath, certPath)
	case errors.Is(certErr, fs.ErrNotExist):
		return nil, fmt.Errorf("%s exists but %s does not; restore the CA certificate, or remove %s to create a new CA", keyPath, certPath, keyPath)
	case certErr != nil:
		return nil, certErr
	case keyErr != nil:
		return nil, keyErr
	}

	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate found", certPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s: %q is not a CA certificate", certPath, cert.Subject.CommonName)
	}
	if now.After(cert.NotAfter) {
		return nil, fmt.Errorf("%s: the CA expired at %s; move %s and %s away to create a new CA (every member then needs a new certificate)",
			certPath, cert.NotAfter.Format(time.RFC3339), CAFile, CAKeyFile)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	if pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("%s does not match the CA certificate %s", keyPath, certPath)
	}
	return &ca{cert: cert, key: key}, nil
}

// parseKey parses the first PEM private key, PKCS #8 or SEC 1.
func parseKey(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM private key found")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T", key)
		}
		return s, nil
	}
}

func newCA(now time.Time, validity time.Duration) (*ca, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{organization},
			// The serial tells two development CAs apart in error messages.
			CommonName: organization + " CA " + shortHex(serial),
		},
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &ca{cert: cert, key: key}, nil
}

// issue returns a new member certificate (DER) for n and its key.
func (c *ca) issue(n Node, now time.Time, validity time.Duration) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{organization}, CommonName: n.Name},
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	if tmpl.NotAfter.After(c.cert.NotAfter) {
		tmpl.NotAfter = c.cert.NotAfter
	}
	hosts := append([]string{n.Name, "localhost", "127.0.0.1", "::1"}, n.Hosts...)
	seen := make(map[san]bool, len(hosts))
	for _, h := range hosts {
		s, err := parseHost(h)
		if err != nil {
			return nil, nil, err
		}
		if seen[s] {
			continue
		}
		seen[s] = true
		if s.ip.IsValid() {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(s.ip.AsSlice()))
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, s.dns)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		return nil, nil, err
	}
	return der, key, nil
}

// newSerial returns a random positive serial number of at most 128 bits.
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	return n.Add(n, big.NewInt(1)), nil
}

// shortHex returns the first 8 hexadecimal digits of n.
func shortHex(n *big.Int) string {
	s := n.Text(16)
	if len(s) > 8 {
		s = s[:8]
	}
	return s
}

func writeKey(path string, key crypto.Signer, replace bool) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600, replace)
}

// writePEM writes one PEM block to path with mode perm. Unless replace is
// set it fails if path exists; with replace it swaps the new file in with
// a rename, so the file at path is whole at all times and gets mode perm
// even if the one it replaces had another.
func writePEM(path, typ string, der []byte, perm fs.FileMode, replace bool) error {
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if !replace {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
