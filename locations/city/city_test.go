package city_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/locations/city"
)

const epoch = int64(1_700_000_000) * 1e9

func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// hid returns a readable fixed id: hid(1) = 00000000-0000-4000-8000-000000000001.
func hid(n int) uuid.UUID { return uuid.MustParse(fmt.Sprintf("00000000-0000-4000-8000-%012d", n)) }

// hero is an entry as dispatch wrote it, stamped in the past.
func hero(n int, loc crdt.Location, health int, patrolling bool) crdt.Hero {
	return crdt.Hero{ID: hid(n), Name: fmt.Sprintf("hero-%d", n), Location: loc, Health: health,
		Patrolling: patrolling, Stamp: crdt.Timestamp{Wall: epoch - 1e9, Node: "dispatch"}}
}

func dead(n int, loc crdt.Location) crdt.Hero {
	h := hero(n, loc, 0, false)
	h.Dead = true
	return h
}

// newCity returns the rules for name over a replica holding heroes.
func newCity(t *testing.T, name crdt.Location, seed uint64, cfg city.Config, heroes ...crdt.Hero) *city.City {
	t.Helper()
	phys := epoch
	r := crdt.NewReplica(crdt.NewClock(string(name), func() int64 { return phys }))
	r.Merge(crdt.Delta{Heroes: heroes})
	c, err := city.New(name, r, seeded(seed), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// unchanged fails if r changed since fp and last were taken.
func unchanged(t *testing.T, r *crdt.Replica, fp uint64, last crdt.Timestamp) {
	t.Helper()
	if r.Fingerprint() != fp {
		t.Fatal("replica changed")
	}
	if r.Clock().Last() != last {
		t.Fatal("clock advanced with no write")
	}
}

// stored fails unless the delta is the one entry the replica now holds.
func stored(t *testing.T, r *crdt.Replica, d crdt.Delta, h crdt.Hero) {
	t.Helper()
	got, _ := r.Get(h.ID)
	if d.Len() != 1 || d.Heroes[0] != h || got != h {
		t.Fatalf("delta %+v, replica holds %+v, returned %+v", d.Heroes, got, h)
	}
	if !(crdt.Timestamp{Wall: epoch - 1e9, Node: "dispatch"}).Less(h.Stamp) {
		t.Fatalf("write stamped %v, not after dispatch's", h.Stamp)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name crdt.Location
		ok   bool
	}{
		{crdt.Gotham, true},
		{crdt.Metropolis, true},
		{crdt.Capitol, true},
		{"new-york", true},
		{"a", true},
		{crdt.Location(strings.Repeat("a", 32)), true},
		{crdt.Home, false},
		{"", false},
		{"Gotham", false},
		{"9lives", false},
		{"-gotham", false},
		{"gotham city", false},
		{crdt.Location(strings.Repeat("a", 33)), false},
	}
	for _, tt := range tests {
		r := crdt.NewReplica(crdt.NewClock("x", func() int64 { return epoch }))
		c, err := city.New(tt.name, r, seeded(1), city.Config{})
		if (err == nil) != tt.ok {
			t.Errorf("New(%q) error = %v, want ok %v", tt.name, err, tt.ok)
			continue
		}
		if tt.ok && (c.Name() != tt.name || c.Replica() != r) {
			t.Errorf("New(%q): Name %q, Replica %p", tt.name, c.Name(), c.Replica())
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	def := city.DefaultConfig()
	want := city.Config{PatrolInterval: 5 * time.Second, FightInterval: 5 * time.Second, MinDamage: 5, MaxDamage: 15, Heal: 20}
	if def != want {
		t.Fatalf("DefaultConfig = %+v, want the original's %+v", def, want)
	}
	tests := []struct {
		name string
		in   city.Config
		want city.Config
	}{
		{"zero is the default", city.Config{}, want},
		{"negative is the default", city.Config{PatrolInterval: -1, FightInterval: -1, MinDamage: -5, MaxDamage: -1, Heal: -20}, want},
		{"set fields kept", city.Config{PatrolInterval: time.Second, FightInterval: 2 * time.Second, MinDamage: 1, MaxDamage: 3, Heal: 50},
			city.Config{PatrolInterval: time.Second, FightInterval: 2 * time.Second, MinDamage: 1, MaxDamage: 3, Heal: 50}},
		{"only min set", city.Config{MinDamage: 8}, city.Config{PatrolInterval: 5 * time.Second, FightInterval: 5 * time.Second, MinDamage: 8, MaxDamage: 15, Heal: 20}},
		{"only max set", city.Config{MaxDamage: 30}, city.Config{PatrolInterval: 5 * time.Second, FightInterval: 5 * time.Second, MinDamage: 5, MaxDamage: 30, Heal: 20}},
		{"negative min never heals", city.Config{MinDamage: -5, MaxDamage: 10}, city.Config{PatrolInterval: 5 * time.Second, FightInterval: 5 * time.Second, MinDamage: 5, MaxDamage: 10, Heal: 20}},
		{"max below min raised", city.Config{MinDamage: 9, MaxDamage: 4}, city.Config{PatrolInterval: 5 * time.Second, FightInterval: 5 * time.Second, MinDamage: 9, MaxDamage: 9, Heal: 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCity(t, crdt.Gotham, 1, tt.in)
			if got := c.Config(); got != tt.want {
				t.Fatalf("Config() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPatrol(t *testing.T) {
	tests := []struct {
		name   string
		heroes []crdt.Hero
		want   int // id number of the hero sent on patrol; 0: none
	}{
		{"empty city", nil, 0},
		{"heroes elsewhere", []crdt.Hero{hero(1, crdt.Metropolis, 100, false), hero(2, crdt.Home, 100, false)}, 0},
		{"all patrolling", []crdt.Hero{hero(1, crdt.Gotham, 100, true), hero(2, crdt.Gotham, 50, true)}, 0},
		{"only the dead", []crdt.Hero{dead(1, crdt.Gotham)}, 0},
		{"one idle here", []crdt.Hero{hero(1, crdt.Gotham, 100, true), hero(2, crdt.Gotham, 40, false),
			hero(3, crdt.Capitol, 100, false), dead(4, crdt.Gotham)}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCity(t, crdt.Gotham, 1, city.Config{}, tt.heroes...)
			r := c.Replica()
			fp, last := r.Fingerprint(), r.Clock().Last()
			h, d, ok := c.Patrol()
			if tt.want == 0 {
				if ok || !d.IsEmpty() {
					t.Fatalf("Patrol = %+v, %v; want nothing", h, ok)
				}
				unchanged(t, r, fp, last)
				return
			}
			if !ok || h.ID != hid(tt.want) || !h.Patrolling || h.Location != crdt.Gotham {
				t.Fatalf("Patrol = %+v, %v; want hero %d patrolling", h, ok, tt.want)
			}
			var before crdt.Hero
			for _, b := range tt.heroes {
				if b.ID == h.ID {
					before = b
				}
			}
			if h.Health != before.Health || h.Name != before.Name {
				t.Fatalf("Patrol changed more than Patrolling: %+v", h)
			}
			stored(t, r, d, h)
		})
	}
}

// TestPatrolPicksEveryIdleHero: successive patrols take each idle hero of
// the city once, then report false; the choice depends only on the seed.
func TestPatrolPicksEveryIdleHero(t *testing.T) {
	heroes := []crdt.Hero{hero(1, crdt.Gotham, 100, false), hero(2, crdt.Gotham, 100, false),
		hero(3, crdt.Gotham, 100, false), hero(4, crdt.Metropolis, 100, false)}
	order := func(seed uint64) []uuid.UUID {
		c := newCity(t, crdt.Gotham, seed, city.Config{}, heroes...)
		var got []uuid.UUID
		for {
			h, _, ok := c.Patrol()
			if !ok {
				return got
			}
			got = append(got, h.ID)
		}
	}
	got := order(7)
	if len(got) != 3 {
		t.Fatalf("patrolled %v, want the 3 Gotham heroes", got)
	}
	seen := map[uuid.UUID]bool{}
	for _, id := range got {
		if seen[id] || id == hid(4) {
			t.Fatalf("patrol order %v", got)
		}
		seen[id] = true
	}
	if again := order(7); fmt.Sprint(again) != fmt.Sprint(got) {
		t.Fatalf("same seed, different order: %v vs %v", again, got)
	}
}

func TestFight(t *testing.T) {
	tests := []struct {
		name      string
		cfg       city.Config
		heroes    []crdt.Hero
		wantFight bool
		health    int // health of hero 1 before the fight
		dmgLo     int
		dmgHi     int
		dies      bool
	}{
		{name: "nobody patrols", heroes: []crdt.Hero{hero(1, crdt.Gotham, 100, false)}},
		{name: "patrols elsewhere", heroes: []crdt.Hero{hero(1, crdt.Capitol, 100, true)}},
		{name: "dead patroller", heroes: []crdt.Hero{dead(1, crdt.Gotham)}},
		{name: "full health", heroes: []crdt.Hero{hero(1, crdt.Gotham, 100, true), hero(2, crdt.Gotham, 100, false)},
			wantFight: true, health: 100, dmgLo: 5, dmgHi: 15},
		{name: "floored at 0, dies", heroes: []crdt.Hero{hero(1, crdt.Gotham, 3, true)},
			wantFight: true, health: 3, dmgLo: 3, dmgHi: 3, dies: true},
		{name: "exactly lethal", cfg: city.Config{MinDamage: 15, MaxDamage: 15}, heroes: []crdt.Hero{hero(1, crdt.Gotham, 15, true)},
			wantFight: true, health: 15, dmgLo: 15, dmgHi: 15, dies: true},
		{name: "live hero at 0 health dies", heroes: []crdt.Hero{hero(1, crdt.Gotham, 0, true)},
			wantFight: true, health: 0, dmgLo: 0, dmgHi: 0, dies: true},
		{name: "fixed damage", cfg: city.Config{MinDamage: 7, MaxDamage: 7}, heroes: []crdt.Hero{hero(1, crdt.Gotham, 50, true)},
			wantFight: true, health: 50, dmgLo: 7, dmgHi: 7},
	}
	for _, tt := range tests {
		for seed := uint64(1); seed <= 20; seed++ {
			c := newCity(t, crdt.Gotham, seed, tt.cfg, tt.heroes...)
			r := c.Replica()
			fp, last, live := r.Fingerprint(), r.Clock().Last(), r.Len()
			f, d, ok := c.Fight()
			if !tt.wantFight {
				if ok || !d.IsEmpty() {
					t.Fatalf("%s: Fight = %+v; want none", tt.name, f)
				}
				unchanged(t, r, fp, last)
				break
			}
			if !ok || f.Hero.ID != hid(1) {
				t.Fatalf("%s: Fight = %+v, %v; want hero 1 to fight", tt.name, f, ok)
			}
			if f.Damage < tt.dmgLo || f.Damage > tt.dmgHi {
				t.Fatalf("%s seed %d: damage %d outside %d..%d", tt.name, seed, f.Damage, tt.dmgLo, tt.dmgHi)
			}
			stored(t, r, d, f.Hero)
			if f.Died() != tt.dies || f.Hero.Dead != tt.dies {
				t.Fatalf("%s: Died = %v, want %v", tt.name, f.Died(), tt.dies)
			}
			if tt.dies {
				if _, err := r.Lookup(hid(1)); !errors.Is(err, crdt.ErrDead) {
					t.Fatalf("%s: dead hero Lookup = %v, want ErrDead", tt.name, err)
				}
				if r.Len() != live-1 || f.Hero.Health != 0 || f.Hero.Patrolling || f.Hero.Name != "hero-1" {
					t.Fatalf("%s: tombstone %+v, Len %d", tt.name, f.Hero, r.Len())
				}
				continue
			}
			if f.Hero.Health != tt.health-f.Damage || !f.Hero.Patrolling || f.Hero.Location != crdt.Gotham {
				t.Fatalf("%s: after %d damage hero is %+v", tt.name, f.Damage, f.Hero)
			}
		}
	}
}

// TestFightDamageRange: damage is uniform over 5..15: every value occurs
// and no other does.
func TestFightDamageRange(t *testing.T) {
	c := newCity(t, crdt.Gotham, 3, city.Config{}, hero(1, crdt.Gotham, 100, true))
	seen := map[int]int{}
	for range 2000 {
		if _, _, err := c.Replica().Update(hid(1), func(h *crdt.Hero) { h.Health = 100 }); err != nil {
			t.Fatal(err)
		}
		f, _, ok := c.Fight()
		if !ok {
			t.Fatal("no fight")
		}
		seen[f.Damage]++
	}
	for dmg := 5; dmg <= 15; dmg++ {
		if seen[dmg] < 100 {
			t.Errorf("damage %d seen %d times in 2000 fights", dmg, seen[dmg])
		}
		delete(seen, dmg)
	}
	if len(seen) != 0 {
		t.Errorf("damage outside 5..15: %v", seen)
	}
}

// TestLonePatroller: a lone patroller at full health dies after 7 to 20
// fights, that is 35 to 100 s at the default 5 s interval.
func TestLonePatroller(t *testing.T) {
	for seed := uint64(1); seed <= 50; seed++ {
		c := newCity(t, crdt.Gotham, seed, city.Config{}, hero(1, crdt.Gotham, 100, true))
		fights := 0
		for {
			f, _, ok := c.Fight()
			if !ok {
				t.Fatalf("seed %d: no fight after %d", seed, fights)
			}
			fights++
			if f.Died() {
				break
			}
		}
		if fights < 7 || fights > 20 {
			t.Errorf("seed %d: died after %d fights, want 7..20", seed, fights)
		}
		if _, _, ok := c.Fight(); ok {
			t.Errorf("seed %d: a dead hero fought", seed)
		}
	}
}

func TestAssign(t *testing.T) {
	tests := []struct {
		name   string
		cfg    city.Config
		before crdt.Hero
		health int
	}{
		{"from home", city.Config{}, hero(1, crdt.Home, 50, false), 70},
		{"from another city, patrolling", city.Config{}, hero(1, crdt.Metropolis, 60, true), 80},
		{"already here, patrolling", city.Config{}, hero(1, crdt.Gotham, 10, true), 30},
		{"capped", city.Config{}, hero(1, crdt.Capitol, 90, true), 100},
		{"at full health", city.Config{}, hero(1, crdt.Home, 100, false), 100},
		{"live at 0 health", city.Config{}, hero(1, crdt.Home, 0, false), 20},
		{"custom heal", city.Config{Heal: 45}, hero(1, crdt.Home, 50, false), 95},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCity(t, crdt.Gotham, 1, tt.cfg, tt.before, hero(2, crdt.Gotham, 10, true))
			h, d, err := c.Assign(hid(1))
			if err != nil {
				t.Fatal(err)
			}
			want := tt.before
			want.Location, want.Patrolling, want.Health, want.Stamp = crdt.Gotham, false, tt.health, h.Stamp
			if h != want {
				t.Fatalf("Assign = %+v, want %+v", h, want)
			}
			stored(t, c.Replica(), d, h)
			if other, _ := c.Replica().Get(hid(2)); other != hero(2, crdt.Gotham, 10, true) {
				t.Fatalf("Assign touched another hero: %+v", other)
			}
		})
	}
}

func TestAssignHome(t *testing.T) {
	tests := []struct {
		name   string
		cfg    city.Config
		before crdt.Hero
		health int
	}{
		{"from a city, patrolling", city.Config{}, hero(1, crdt.Gotham, 30, true), 50},
		{"already home", city.Config{}, hero(1, crdt.Home, 95, false), 100},
		{"custom heal", city.Config{Heal: 5}, hero(1, crdt.Capitol, 30, true), 35},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := crdt.NewReplica(crdt.NewClock("dispatch", func() int64 { return epoch }))
			r.Merge(crdt.Delta{Heroes: []crdt.Hero{tt.before}})
			h, d, err := city.AssignHome(r, hid(1), tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.before
			want.Location, want.Patrolling, want.Health, want.Stamp = crdt.Home, false, tt.health, h.Stamp
			if h != want {
				t.Fatalf("AssignHome = %+v, want %+v", h, want)
			}
			stored(t, r, d, h)
		})
	}
}

// TestAssignErrors: assigning a dead or unknown hero answers at once with
// a clear error and changes nothing.
func TestAssignErrors(t *testing.T) {
	tests := []struct {
		name string
		id   uuid.UUID
		want error
	}{
		{"dead", hid(1), city.ErrDead},
		{"unknown", hid(9), city.ErrUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCity(t, crdt.Gotham, 1, city.Config{}, dead(1, crdt.Metropolis), hero(2, crdt.Home, 50, false))
			r := c.Replica()
			fp, last := r.Fingerprint(), r.Clock().Last()
			h, d, err := c.Assign(tt.id)
			if !errors.Is(err, tt.want) || h != (crdt.Hero{}) || !d.IsEmpty() {
				t.Fatalf("Assign = %+v, %+v, %v; want %v", h, d, err, tt.want)
			}
			unchanged(t, r, fp, last)
			h, d, err = city.AssignHome(r, tt.id, city.Config{})
			if !errors.Is(err, tt.want) || h != (crdt.Hero{}) || !d.IsEmpty() {
				t.Fatalf("AssignHome = %+v, %+v, %v; want %v", h, d, err, tt.want)
			}
			unchanged(t, r, fp, last)
		})
	}
	if !errors.Is(city.ErrDead, crdt.ErrDead) || !errors.Is(city.ErrUnknown, crdt.ErrUnknown) {
		t.Fatal("city errors are not the crdt ones")
	}
}
