package messages

import "testing"

func TestCityKindRoundTrip(t *testing.T) {
	tests := []struct {
		kind string
		city string
		ok   bool
	}{
		{CityKind("gotham"), "gotham", true},
		{CityKind("new-york"), "new-york", true},
		{"city-gotham", "gotham", true}, // the kind's spelling is part of the wire contract
		{DispatchKind, "", false},
		{"gotham", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		city, ok := CityFromKind(tt.kind)
		if ok != tt.ok || (ok && city != tt.city) {
			t.Errorf("CityFromKind(%q) = %q, %v; want %q, %v", tt.kind, city, ok, tt.city, tt.ok)
		}
	}
}
