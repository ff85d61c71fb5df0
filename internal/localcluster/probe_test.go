package localcluster

import "testing"

func TestConverged(t *testing.T) {
	cities := []string{"a", "b"}
	if fp, ok := Converged(map[string]ReplicaInfo{"a": {Fingerprint: 9}, "b": {Fingerprint: 9}}, cities); !ok || fp != 9 {
		t.Fatalf("equal replicas: %v %v", fp, ok)
	}
	if _, ok := Converged(map[string]ReplicaInfo{"a": {Fingerprint: 9}, "b": {Fingerprint: 8}}, cities); ok {
		t.Fatal("different replicas converged")
	}
	if _, ok := Converged(map[string]ReplicaInfo{"a": {Fingerprint: 9}}, cities); ok {
		t.Fatal("a city that did not answer counts as converged")
	}
	if _, ok := Converged(nil, nil); ok {
		t.Fatal("no cities converged")
	}
}
