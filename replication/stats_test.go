package replication_test

import (
	"reflect"
	"strconv"
	"testing"

	"github.com/superhero-cluster/superhero/replication"
)

// TestStatsAddSumsEveryField guards Stats.Add against a counter added to
// Stats and forgotten in Add: the metrics would then lose it on every
// restart of a node's actor.
func TestStatsAddSumsEveryField(t *testing.T) {
	var a, b replication.Stats
	// counters lists every counter of s: the uint64 fields and the
	// elements of its arrays of them.
	counters := func(s *replication.Stats) (vs []reflect.Value, names []string) {
		v := reflect.ValueOf(s).Elem()
		for i := range v.NumField() {
			f, name := v.Field(i), v.Type().Field(i).Name
			if f.Kind() == reflect.Array {
				for j := range f.Len() {
					vs, names = append(vs, f.Index(j)), append(names, name+"["+strconv.Itoa(j)+"]")
				}
				continue
			}
			vs, names = append(vs, f), append(names, name)
		}
		return vs, names
	}
	va, _ := counters(&a)
	vb, _ := counters(&b)
	for i := range va {
		va[i].SetUint(uint64(i + 1))
		vb[i].SetUint(100)
	}
	sum := a.Add(b)
	vs, names := counters(&sum)
	for i := range vs {
		if got, want := vs[i].Uint(), uint64(i+101); got != want {
			t.Errorf("Add: %s = %d, want %d", names[i], got, want)
		}
	}
}
