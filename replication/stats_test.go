package replication_test

import (
	"reflect"
	"testing"

	"github.com/superhero-cluster/superhero/replication"
)

// TestStatsAddSumsEveryField guards Stats.Add against a counter added to
// Stats and forgotten in Add: the metrics would then lose it on every
// restart of a node's actor.
func TestStatsAddSumsEveryField(t *testing.T) {
	var a, b replication.Stats
	va, vb := reflect.ValueOf(&a).Elem(), reflect.ValueOf(&b).Elem()
	for i := range va.NumField() {
		va.Field(i).SetUint(uint64(i + 1))
		vb.Field(i).SetUint(100)
	}
	sum := reflect.ValueOf(a.Add(b))
	for i := range sum.NumField() {
		if got, want := sum.Field(i).Uint(), uint64(i+101); got != want {
			t.Errorf("Add: %s = %d, want %d", sum.Type().Field(i).Name, got, want)
		}
	}
}
