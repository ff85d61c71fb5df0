// Package tlsconf configures mutual TLS between the members of the
// cluster: the gRPC connections between nodes and the etcd client.
//
// Every member holds three PEM files: the certificate of the CA that signs
// every member's certificate, its own certificate, and that certificate's
// private key. A member accepts a connection only from a peer whose
// certificate the CA signed, and dials a peer only if the peer's
// certificate was signed by the CA and names the host dialled. The CA is
// thus the membership boundary: any holder of a certificate it signed is
// a member.
//
// A member both serves and dials, so its certificate must allow TLS server
// and TLS client authentication: its extended key usages must include
// ServerAuth and ClientAuth (or list none at all). It must also name, as a
// subject alternative name, every IP address or DNS name that peers dial it
// by. Package devcerts issues such certificates for development.
//
// Only TLS 1.3 is accepted, in both directions.
//
// A main registers the flags, and loads the files if any was given:
//
//	var files tlsconf.Files
//	files.RegisterFlags(fs)
//	...
//	if files.Enabled() {
//		b, err := files.Load()
//		if err != nil {
//			return err
//		}
//		// Proto.Actor remoting:
//		remote.WithServerOptions(grpc.Creds(b.ServerCredentials()))
//		remote.WithDialOptions(grpc.WithTransportCredentials(b.ClientCredentials()))
//		// etcd client: clientv3.Config{TLS: b.Client(""), ...}
//	}
//
// remote.WithDialOptions replaces the remoting's default dial options,
// which include grpc.WithInsecure, so the credentials above are the only
// transport credentials used.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"flag"

	"google.golang.org/grpc/credentials"
)

// Files names the PEM files of a member's TLS configuration.
type Files struct {
	// CA holds the certificate of the CA that signs every member's
	// certificate. It may hold several CA certificates, for example the
	// old and the new one while the CA is being replaced.
	CA string

	// Cert holds this member's certificate, optionally followed by the
	// intermediate certificates between it and the CA.
	Cert string

	// Key holds the private key of Cert (PKCS #8, SEC 1 or PKCS #1).
	Key string
}

// RegisterFlags registers the flags -tls-ca, -tls-cert and -tls-key on fs,
// setting f.CA, f.Cert and f.Key. The current values of f are the defaults.
func (f *Files) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&f.CA, "tls-ca", f.CA,
		"PEM `file` of the CA certificate that signs every member's certificate; with -tls-cert and -tls-key it turns on mutual TLS between members")
	fs.StringVar(&f.Cert, "tls-cert", f.Cert,
		"PEM `file` of this node's certificate, signed by the -tls-ca CA, valid for both server and client authentication and naming the addresses peers dial")
	fs.StringVar(&f.Key, "tls-key", f.Key,
		"PEM `file` of the private key of -tls-cert")
}

// Enabled reports whether any of the files is set, that is whether the
// member is meant to use TLS. Load then requires all three.
func (f Files) Enabled() bool {
	return f.CA != "" || f.Cert != "" || f.Key != ""
}

// A Bundle is a member's loaded TLS configuration. Its methods return new
// configurations on every call, which the caller may modify.
type Bundle struct {
	files Files
	roots *x509.CertPool
	cert  tls.Certificate
}

// Files returns the files the bundle was loaded from.
func (b *Bundle) Files() Files { return b.files }

// Leaf returns the member's certificate, for example to log its subject
// and its expiry.
func (b *Bundle) Leaf() *x509.Certificate { return b.cert.Leaf }

// CAPool returns a new pool of the CA certificates.
func (b *Bundle) CAPool() *x509.CertPool { return b.roots.Clone() }

// Server returns the configuration for accepting connections from other
// members: TLS 1.3 only, presenting the member's certificate, and requiring
// from the client a certificate signed by the CA and valid for client
// authentication.
func (b *Bundle) Server() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{b.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    b.roots,
	}
}

// Client returns the configuration for dialling another member: TLS 1.3
// only, presenting the member's certificate to the server, and requiring
// from the server a certificate signed by the CA, valid for server
// authentication, that names serverName.
//
// An empty serverName leaves the name to the dialler, and is what most
// callers want: tls.Dial, tls.Dialer, net/http.Transport and gRPC
// (credentials.NewTLS, hence ClientCredentials and the etcd client) set it
// to the host of the address they dial, so a peer dialled at 198.18.0.11
// must present a certificate naming the IP address 198.18.0.11, and one
// dialled at gotham.example must name gotham.example. Only tls.Client,
// which wraps a connection without knowing its address, needs the name
// given here; with an empty one its handshake fails rather than skip the
// check.
//
// Give the etcd client Client(""), not a name: it checks each endpoint
// against that endpoint's own host, whereas a name given here would be
// required of every endpoint.
func (b *Bundle) Client(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{b.cert},
		RootCAs:      b.roots,
		ServerName:   serverName,
	}
}

// ServerCredentials returns gRPC transport credentials for a server, made
// from Server. Pass them to grpc.NewServer with grpc.Creds.
func (b *Bundle) ServerCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(b.Server())
}

// ClientCredentials returns gRPC transport credentials for a client, made
// from Client(""): the server's certificate must name the host of the
// target dialled (or the authority set with grpc.WithAuthority). Pass them
// to grpc.Dial with grpc.WithTransportCredentials.
func (b *Bundle) ClientCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(b.Client(""))
}
