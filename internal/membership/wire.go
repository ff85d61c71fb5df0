package membership

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// HealthPath is the path of the challenge endpoint.
const HealthPath = "/_health"

// Limits of the challenge protocol.
const (
	// NonceBytes is the size of a challenge nonce; it travels as
	// 2*NonceBytes lowercase hex digits in the "nonce" query parameter.
	NonceBytes = 16
	// MaxAnswerBytes caps the answer body a poller reads; a longer answer
	// is refused without being parsed.
	MaxAnswerBytes = 16 << 10
	// maxKinds and maxField bound what a verified answer may carry.
	maxKinds = 64
	maxField = 256
)

const (
	answerVersion = 1
	// labelKey derives the membership key from the cookie; labelAnswer
	// separates answer MACs from anything else keyed by it.
	labelKey    = "superhero-cluster/v1/membership-key"
	labelAnswer = "superhero-cluster/v1/health-answer"
)

// Rejection reasons. A poller wraps them with the peer's address; none of
// them carries secret material.
var (
	ErrMalformed    = errors.New("malformed answer")
	ErrTooLarge     = errors.New("answer too large")
	ErrStale        = errors.New("answer to another challenge")
	ErrBadMAC       = errors.New("MAC mismatch (another cookie, or forged)")
	ErrOtherCluster = errors.New("member of another cluster")
	ErrWrongAddress = errors.New("answer names another health address (relayed)")
	ErrStatus       = errors.New("unexpected HTTP status")
)

// DeriveKey derives the membership key from the cluster cookie with
// HMAC-SHA256 under a label of its own, so the key differs from every other
// key derived from the cookie (the gRPC handshake's) and the cookie itself
// is never used directly.
func DeriveKey(cookie string) []byte {
	m := hmac.New(sha256.New, []byte(cookie))
	m.Write([]byte(labelKey))
	return m.Sum(nil)
}

// Member is what a health answer says about a member.
type Member struct {
	// ID is the member's actor-system id.
	ID string `json:"id"`
	// Host and Port are the member's remoting (gRPC) address.
	Host string `json:"host"`
	Port int    `json:"port"`
	// HealthHost and HealthPort are where the member answers challenges.
	HealthHost string `json:"health_host"`
	HealthPort int    `json:"health_port"`
	// Kinds are the cluster kinds the member hosts.
	Kinds []string `json:"kinds"`
	// Cluster is the base cluster name (no cookie fingerprint).
	Cluster string `json:"cluster"`
}

// Address is the member's remoting address "host:port".
func (m Member) Address() string { return net.JoinHostPort(m.Host, strconv.Itoa(m.Port)) }

// HealthAddress is the member's health address "host:port".
func (m Member) HealthAddress() string {
	return net.JoinHostPort(m.HealthHost, strconv.Itoa(m.HealthPort))
}

// answer is the JSON body of a health answer.
type answer struct {
	V      int    `json:"v"`
	Nonce  string `json:"nonce"`
	Member Member `json:"member"`
	MAC    string `json:"mac"`
}

// newNonce returns a fresh random challenge.
func newNonce() (string, error) {
	b := make([]byte, NonceBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// validNonce reports whether s has the shape of a nonce.
func validNonce(s string) bool {
	if len(s) != 2*NonceBytes {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// answerMAC is HMAC-SHA256 under key over the label, the nonce and every
// field of m, each length-prefixed so no two different answers share an
// input.
func answerMAC(key []byte, nonce string, m Member) []byte {
	h := hmac.New(sha256.New, key)
	var n [4]byte
	put := func(s string) {
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	put(labelAnswer)
	put(nonce)
	put(m.ID)
	put(m.Host)
	put(strconv.Itoa(m.Port))
	put(m.HealthHost)
	put(strconv.Itoa(m.HealthPort))
	put(m.Cluster)
	binary.BigEndian.PutUint32(n[:], uint32(len(m.Kinds)))
	h.Write(n[:])
	for _, k := range m.Kinds {
		put(k)
	}
	return h.Sum(nil)
}

// signAnswer returns the JSON answer of m to nonce.
func signAnswer(key []byte, nonce string, m Member) ([]byte, error) {
	return json.Marshal(answer{
		V:      answerVersion,
		Nonce:  nonce,
		Member: m,
		MAC:    hex.EncodeToString(answerMAC(key, nonce, m)),
	})
}

// verifyAnswer checks an answer body to the challenge nonce sent to
// polled: version, nonce echo, MAC, cluster name, field sanity and that the
// answer names the health address that was polled.
func verifyAnswer(key []byte, cluster, nonce, polled string, body []byte) (Member, error) {
	if len(body) > MaxAnswerBytes {
		return Member{}, ErrTooLarge
	}
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		return Member{}, fmt.Errorf("%w: not JSON", ErrMalformed)
	}
	if a.V != answerVersion || a.MAC == "" {
		return Member{}, fmt.Errorf("%w: not a version %d answer", ErrMalformed, answerVersion)
	}
	if a.Nonce != nonce {
		return Member{}, ErrStale
	}
	mac, err := hex.DecodeString(a.MAC)
	if err != nil || len(mac) != sha256.Size {
		return Member{}, fmt.Errorf("%w: MAC is not %d hex bytes", ErrMalformed, sha256.Size)
	}
	if !hmac.Equal(mac, answerMAC(key, nonce, a.Member)) {
		return Member{}, ErrBadMAC
	}
	m := a.Member
	if m.Cluster != cluster {
		return Member{}, fmt.Errorf("%w %q", ErrOtherCluster, m.Cluster)
	}
	if err := checkMember(m); err != nil {
		return Member{}, err
	}
	if !sameAddress(m.HealthAddress(), polled) {
		return Member{}, fmt.Errorf("%w %s", ErrWrongAddress, m.HealthAddress())
	}
	return m, nil
}

// checkMember rejects answers that verify but could not be used (only a
// holder of the key can produce them, so this guards against bugs).
func checkMember(m Member) error {
	switch {
	case m.ID == "" || len(m.ID) > maxField:
		return fmt.Errorf("%w: bad member id", ErrMalformed)
	case m.Host == "" || len(m.Host) > maxField || m.HealthHost == "" || len(m.HealthHost) > maxField:
		return fmt.Errorf("%w: bad host", ErrMalformed)
	case m.Port < 1 || m.Port > 65535 || m.HealthPort < 1 || m.HealthPort > 65535:
		return fmt.Errorf("%w: bad port", ErrMalformed)
	case len(m.Kinds) > maxKinds:
		return fmt.Errorf("%w: too many kinds", ErrMalformed)
	}
	for _, k := range m.Kinds {
		if k == "" || len(k) > maxField {
			return fmt.Errorf("%w: bad kind", ErrMalformed)
		}
	}
	return nil
}

// sameAddress compares two "host:port" addresses, IP addresses in their
// canonical form and host names without regard to case.
func sameAddress(a, b string) bool {
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || ap != bp {
		return false
	}
	ai, err1 := netip.ParseAddr(ah)
	bi, err2 := netip.ParseAddr(bh)
	if err1 == nil && err2 == nil {
		return ai.Unmap() == bi.Unmap()
	}
	return strings.EqualFold(ah, bh)
}

// handler answers challenges on HealthPath with self, signed under key.
type handler struct {
	key  []byte
	self Member
}

// NewHandler returns the HTTP handler a member serves on HealthPath: it
// answers GET /_health?nonce=<32 hex digits> with self and a MAC over the
// nonce and every field of self, keyed by key (see DeriveKey). A request
// without a well-formed nonce gets 400 and nothing about the member. The
// provider serves it itself; tests use it to stand in for members.
func NewHandler(key []byte, self Member) http.Handler {
	return &handler{key: key, self: self}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != HealthPath {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	nonce := r.URL.Query().Get("nonce")
	if !validNonce(nonce) {
		http.Error(w, "a nonce of 32 lowercase hex digits is required", http.StatusBadRequest)
		return
	}
	body, err := signAnswer(h.key, nonce, h.self)
	if err != nil {
		http.Error(w, "cannot encode answer", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}
