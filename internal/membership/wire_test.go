package membership

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

var (
	testKey  = DeriveKey("cookie-a")
	otherKey = DeriveKey("cookie-b")
)

func testMember() Member {
	return Member{
		ID: "member-1", Host: "127.0.0.1", Port: 8101,
		HealthHost: "127.0.0.1", HealthPort: 6331,
		Kinds: []string{"city-gotham", "prototopic"}, Cluster: "superhero",
	}
}

func mustNonce(t *testing.T) string {
	t.Helper()
	n, err := newNonce()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustSign(t *testing.T, key []byte, nonce string, m Member) []byte {
	t.Helper()
	b, err := signAnswer(key, nonce, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDeriveKey(t *testing.T) {
	if bytes.Equal(testKey, otherKey) {
		t.Fatal("different cookies derive the same key")
	}
	if !bytes.Equal(testKey, DeriveKey("cookie-a")) {
		t.Fatal("key derivation is not deterministic")
	}
	if len(testKey) != 32 || bytes.Contains(testKey, []byte("cookie-a")) {
		t.Fatalf("unexpected key %x", testKey)
	}
}

func TestVerifyAnswer(t *testing.T) {
	m := testMember()
	const polled = "127.0.0.1:6331"
	nonce := mustNonce(t)

	got, err := verifyAnswer(testKey, "superhero", nonce, polled, mustSign(t, testKey, nonce, m))
	if err != nil {
		t.Fatalf("valid answer refused: %v", err)
	}
	if got.ID != m.ID || got.Address() != "127.0.0.1:8101" || got.HealthAddress() != polled || len(got.Kinds) != 2 {
		t.Fatalf("verified member %+v, want %+v", got, m)
	}

	tamper := func(f func(*answer)) []byte {
		var a answer
		if err := json.Unmarshal(mustSign(t, testKey, nonce, m), &a); err != nil {
			t.Fatal(err)
		}
		f(&a)
		b, _ := json.Marshal(a)
		return b
	}
	otherCluster := m
	otherCluster.Cluster = "villains"
	elsewhere := m
	elsewhere.HealthPort = 6339
	noID := m
	noID.ID = ""

	for _, tc := range []struct {
		name   string
		nonce  string // the challenge the poller sent
		polled string
		body   []byte
		want   error
	}{
		{"wrong cookie", nonce, polled, mustSign(t, otherKey, nonce, m), ErrBadMAC},
		{"replayed answer to another nonce", mustNonce(t), polled, mustSign(t, testKey, nonce, m), ErrStale},
		{"nonce echo rewritten to the new challenge", "0123456789abcdef0123456789abcdef", polled,
			tamper(func(a *answer) { a.Nonce = "0123456789abcdef0123456789abcdef" }), ErrBadMAC},
		{"kinds changed", nonce, polled, tamper(func(a *answer) { a.Member.Kinds = []string{"city-metropolis"} }), ErrBadMAC},
		{"remote port changed", nonce, polled, tamper(func(a *answer) { a.Member.Port = 9999 }), ErrBadMAC},
		{"id changed", nonce, polled, tamper(func(a *answer) { a.Member.ID = "member-2" }), ErrBadMAC},
		{"health port changed", nonce, "127.0.0.1:6339", tamper(func(a *answer) { a.Member.HealthPort = 6339 }), ErrBadMAC},
		{"answer from another health address", nonce, polled, mustSign(t, testKey, nonce, elsewhere), ErrWrongAddress},
		{"polled under another host", nonce, "localhost:6331", mustSign(t, testKey, nonce, m), ErrWrongAddress},
		{"other cluster", nonce, polled, mustSign(t, testKey, nonce, otherCluster), ErrOtherCluster},
		{"signed but unusable", nonce, polled, mustSign(t, testKey, nonce, noID), ErrMalformed},
		{"not JSON", nonce, polled, []byte("<html>hello</html>"), ErrMalformed},
		{"empty", nonce, polled, nil, ErrMalformed},
		{"automanaged format", nonce, polled, []byte(`{"id":"x","address":"127.0.0.1","port":8101,"auto_manage_port":6331,"kinds":["city-gotham"],"cluster_name":"superhero-0011223344556677"}`), ErrMalformed},
		{"other version", nonce, polled, tamper(func(a *answer) { a.V = 2 }), ErrMalformed},
		{"MAC not hex", nonce, polled, tamper(func(a *answer) { a.MAC = "zz" }), ErrMalformed},
		{"MAC truncated", nonce, polled, tamper(func(a *answer) { a.MAC = a.MAC[:32] }), ErrMalformed},
		{"oversized", nonce, polled, append(mustSign(t, testKey, nonce, m), bytes.Repeat([]byte(" "), MaxAnswerBytes)...), ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := verifyAnswer(testKey, "superhero", tc.nonce, tc.polled, tc.body)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if got.ID != "" {
				t.Fatalf("refused answer returned member %+v", got)
			}
			if strings.Contains(err.Error(), "cookie-a") {
				t.Fatalf("error mentions the cookie: %v", err)
			}
		})
	}
}

func TestSameAddress(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:6331", "127.0.0.1:6331", true},
		{"[::1]:6331", "[0:0::1]:6331", true},
		{"[::ffff:127.0.0.1]:6331", "127.0.0.1:6331", true},
		{"LOCALHOST:6331", "localhost:6331", true},
		{"127.0.0.1:6331", "127.0.0.1:6332", false},
		{"127.0.0.1:6331", "127.0.0.2:6331", false},
		{"localhost:6331", "127.0.0.1:6331", false},
		{"127.0.0.1", "127.0.0.1", false},
	} {
		if got := sameAddress(tc.a, tc.b); got != tc.want {
			t.Errorf("sameAddress(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestHandler(t *testing.T) {
	m := testMember()
	h := NewHandler(testKey, m)
	serve := func(method, target string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
		return rec
	}

	nonce := mustNonce(t)
	rec := serve(http.MethodGet, "/_health?nonce="+nonce)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET with nonce: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if _, err := verifyAnswer(testKey, "superhero", nonce, m.HealthAddress(), rec.Body.Bytes()); err != nil {
		t.Fatalf("handler's answer refused: %v", err)
	}
	if strings.Contains(rec.Body.String(), "cookie") || bytes.Contains(rec.Body.Bytes(), testKey) {
		t.Fatalf("answer leaks secret material: %s", rec.Body)
	}

	for _, tc := range []struct {
		method, target string
		want           int
	}{
		{http.MethodGet, "/_health", http.StatusBadRequest},
		{http.MethodGet, "/_health?nonce=", http.StatusBadRequest},
		{http.MethodGet, "/_health?nonce=abc", http.StatusBadRequest},
		{http.MethodGet, "/_health?nonce=" + strings.ToUpper(nonce), http.StatusBadRequest},
		{http.MethodGet, "/_health?nonce=" + nonce + "00", http.StatusBadRequest},
		{http.MethodGet, "/_health?nonce=" + strings.Repeat("g", 32), http.StatusBadRequest},
		{http.MethodPost, "/_health?nonce=" + nonce, http.StatusMethodNotAllowed},
		{http.MethodGet, "/other?nonce=" + nonce, http.StatusNotFound},
	} {
		rec := serve(tc.method, tc.target)
		if rec.Code != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.target, rec.Code, tc.want)
		}
		if strings.Contains(rec.Body.String(), m.ID) {
			t.Errorf("%s %s: refused request learned the member: %s", tc.method, tc.target, rec.Body)
		}
	}
}
