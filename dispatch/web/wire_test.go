package web

import (
	"encoding/json"
	"testing"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
)

// TestHeroJSONStampExact checks that a hero's stamp reaches the page
// whole: the wall as a decimal string (a JSON number would round it in
// JavaScript), the logical counter and the node.
func TestHeroJSONStampExact(t *testing.T) {
	const wall = 1751890000123456789 // not a float64: as a number it reads 1751890000123456768
	if int64(float64(wall)) == wall {
		t.Fatal("the test wall is exact as a float64; pick another")
	}
	for _, st := range []crdt.Timestamp{
		{Wall: wall, Logical: 7, Node: "gotham"},
		{Wall: -5, Logical: 1<<32 - 1, Node: "dispatch"},
		{},
	} {
		h := crdt.Hero{ID: uuid.New(), Name: "Nova", Location: crdt.Gotham, Health: 40, Stamp: st}
		b, err := json.Marshal(toHeroJSON(h))
		if err != nil {
			t.Fatal(err)
		}
		var raw struct{ Stamp json.RawMessage }
		if err := json.Unmarshal(b, &raw); err != nil {
			t.Fatal(err)
		}
		want := `{"wall":"` + jsonInt(st.Wall) + `","logical":` + jsonInt(int64(st.Logical)) + `,"node":"` + st.Node + `"}`
		if string(raw.Stamp) != want {
			t.Errorf("stamp %s, want %s", raw.Stamp, want)
		}
		var back heroJSON
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if got := (crdt.Timestamp{Wall: back.Stamp.Wall, Logical: back.Stamp.Logical, Node: back.Stamp.Node}); got != st {
			t.Errorf("stamp read back as %v, want %v", got, st)
		}
		if back.UpdatedBy != st.Node {
			t.Errorf("updated_by %q, want %q", back.UpdatedBy, st.Node)
		}
	}
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
