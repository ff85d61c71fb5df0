package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/superhero-cluster/superhero/internal/netlab"
)

// The test binary doubles as a fake node: run with fakeNodeEnv set, it
// serves GET /readyz on its -http address if it has one, and runs until
// killed.
const fakeNodeEnv = "NETLAB_FAKE_NODE"

func TestMain(m *testing.M) {
	if os.Getenv(fakeNodeEnv) != "" {
		fakeNode(os.Args[1:])
		return
	}
	os.Exit(m.Run())
}

func fakeNode(args []string) {
	if i := slices.Index(args, "-http"); i >= 0 && i+1 < len(args) {
		http.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "fake ready") })
		fmt.Println(http.ListenAndServe(args[i+1], nil))
		os.Exit(1)
	}
	select {} // until killed; the runtime's signal handling keeps it alive
}

// fakeBin writes locations and dispatch into a directory: scripts that
// print their arguments and run the test binary as a fake node.
func fakeBin(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range []string{"locations", "dispatch"} {
		script := fmt.Sprintf("#!/bin/sh\necho \"args: $*\"\n%s=1 exec %s \"$@\"\n", fakeNodeEnv, exe)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func requireLab(t *testing.T) {
	t.Helper()
	if err := netlab.Available("etcd"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and %v", err)
		}
		t.Skip(err)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-cities", "gotham, capitol", "-dir", "/x", "--", "-log-level", "debug"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.cities, []string{"gotham", "capitol"}) || o.dir != "/x" || !slices.Equal(o.extra, []string{"-log-level", "debug"}) {
		t.Errorf("parsed %+v", o)
	}
	if _, err := parseFlags([]string{"-cities", ","}, io.Discard); err == nil {
		t.Error("-cities with no city accepted")
	}
}

// noLabLeft fails the test if a namespace with the prefix remains.
func noLabLeft(t *testing.T, prefix string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), prefix+"-") {
		t.Errorf("namespaces left:\n%s", out)
	}
}

func TestScript(t *testing.T) {
	requireLab(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "demo.txt")
	if err := os.WriteFile(script, []byte(`# every command once
status
cut gotham metropolis
kill gotham
start gotham
stop capitol
status
cont capitol
partition dispatch,gotham metropolis,capitol
drop capitol 25%
heal capitol
isolate etcd
heal
sleep 10ms
help
cut gotham nobody
status
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	err := run(ctx, []string{"-prefix", "shcmd", "-bin", fakeBin(t), "-dir", dir, "-script", script, "-stop-timeout", "2s"}, &stdout, &stderr)
	t.Logf("run took %v", time.Since(start).Round(time.Millisecond))
	out := stdout.String()
	t.Logf("stdout:\n%s", out)
	if err == nil || !strings.Contains(err.Error(), "demo.txt:16: cut gotham nobody") || !strings.Contains(err.Error(), `unknown node "nobody"`) {
		t.Errorf("run: %v, want the error of line 16", err)
	}
	for _, want := range []string{
		"faults: cut gotham-metropolis",
		"gotham exited (signal: killed)",
		"gotham started, pid",
		"  capitol     198.18.0.13  stopped (SIGSTOP), pid",
		"capitol continued",
		"faults: cut capitol-dispatch, cut capitol-gotham, cut dispatch-metropolis, cut gotham-metropolis, drop capitol 25%",
		"faults: cut dispatch-metropolis, cut gotham-metropolis\n",
		"faults: cut capitol-etcd, cut dispatch-etcd, cut dispatch-metropolis, cut etcd-gotham, cut etcd-metropolis, cut gotham-metropolis\n",
		"faults: none",
		"partition A,B C,D",
		"lab shcmd-",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	if !regexp.MustCompile(`\[ +\d+\.\ds\] status\n  etcd `).MatchString(out) {
		t.Error("script commands are not echoed with their time")
	}
	logs := dir
	for file, want := range map[string]string{
		"gotham-1.log": "args: -city gotham -provider etcd -etcd https://198.18.0.2:2379 -host 198.18.0.11 -port 8100" +
			" -tls-ca " + dir + "/certs/ca.pem -tls-cert " + dir + "/certs/gotham.pem -tls-key " + dir + "/certs/gotham-key.pem",
		"gotham-2.log": "args: -city gotham ",
		"dispatch-1.log": "args: -provider etcd -etcd https://198.18.0.2:2379 -host 198.18.0.10 -port 8100" +
			" -tls-ca " + dir + "/certs/ca.pem -tls-cert " + dir + "/certs/dispatch.pem -tls-key " + dir + "/certs/dispatch-key.pem -http 198.18.0.10:4900",
		"etcd-1.log": `"msg":"serving client traffic securely","address":"198.18.0.2:2379"`,
	} {
		b, err := os.ReadFile(filepath.Join(logs, file))
		if err != nil {
			t.Error(err)
			continue
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q:\n%s", file, want, b)
		}
	}
	for _, f := range []string{"ca.pem", "etcd.pem", "dispatch.pem", "capitol-key.pem", "admin.pem"} {
		if _, err := os.Stat(filepath.Join(dir, "certs", f)); err != nil {
			t.Error(err)
		}
	}
	noLabLeft(t, "shcmd")
}

// While a script sleeps: the page answers through -forward, and a
// cancelled context (Ctrl-C) ends run promptly with everything removed.
func TestForwardAndInterrupt(t *testing.T) {
	requireLab(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "wait.txt")
	if err := os.WriteFile(script, []byte("sleep 1h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-prefix", "shcmd", "-bin", fakeBin(t), "-dir", dir, "-script", script, "-forward", "127.0.0.1:0", "-cities", "gotham"}, &stdout, &stderr)
	}()
	forwarded := regexp.MustCompile(`or (http://127\.0\.0\.1:\d+/) from this machine`)
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(stdout.String(), "] sleep 1h") {
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the script did not start:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	m := forwarded.FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no forwarded address in:\n%s", stdout.String())
	}
	// The fake dispatch may not listen yet: ask until it answers.
	var body string
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(m[1] + "readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if body = string(b); resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %sreadyz: %v %q", m[1], err, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if body != "fake ready\n" {
		t.Errorf("forwarded page answered %q", body)
	}

	cancel()
	start := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("interrupted run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after the interrupt")
	}
	t.Logf("cleaned up in %v after the interrupt", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(stdout.String(), "interrupted; cleaning up") {
		t.Errorf("stdout:\n%s", stdout.String())
	}
	noLabLeft(t, "shcmd")
	if _, err := net.DialTimeout("tcp", strings.TrimSuffix(strings.TrimPrefix(m[1], "http://"), "/"), time.Second); err == nil {
		t.Error("the forwarded address still accepts connections")
	}
}
