package web

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/brianvoe/gofakeit/v7"
)

// MaxNameLen is the longest hero name accepted, in characters.
const MaxNameLen = 64

// gofakeit v7 has no superhero names (the original used Elixir Faker's
// Superhero.name), so names are put together from our own title words and
// gofakeit's animals and colours.
var (
	heroTitles     = []string{"Captain", "Doctor", "Mister", "Miss", "Professor", "Agent", "Major", "Lady", "Lord", "The"}
	heroAdjectives = []string{"Mighty", "Silent", "Crimson", "Golden", "Cosmic", "Atomic", "Electric", "Invisible", "Amazing", "Incredible", "Swift", "Iron", "Quantum", "Radiant", "Midnight", "Thunder"}
	heroEndings    = []string{"Man", "Woman", "Girl", "Boy", "Knight", "Lantern", "Bolt", "Fist", "Storm", "Shadow"}
)

// fakeHeroName returns a name such as "Captain Otter", "Cosmic Badger",
// "Walrus Knight" or "Doctor Teal". f is safe for concurrent use.
func fakeHeroName(f *gofakeit.Faker) string {
	animal := titleCase(f.Animal())
	var name string
	switch f.IntN(4) {
	case 0:
		name = f.RandomString(heroTitles) + " " + animal
	case 1:
		name = f.RandomString(heroAdjectives) + " " + animal
	case 2:
		name = animal + " " + f.RandomString(heroEndings)
	default:
		name = f.RandomString(heroTitles) + " " + titleCase(f.SafeColor())
	}
	return name
}

func titleCase(s string) string {
	words := strings.Fields(s)
	for i, w := range words {
		r, n := utf8.DecodeRuneInString(w)
		words[i] = string(unicode.ToUpper(r)) + w[n:]
	}
	return strings.Join(words, " ")
}

// cleanName trims name and checks it: at most MaxNameLen characters and
// no control characters. An empty result means "make one up".
func cleanName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if utf8.RuneCountInString(name) > MaxNameLen {
		return "", badRequest(fmt.Sprintf("name is longer than %d characters", MaxNameLen))
	}
	if strings.ContainsFunc(name, unicode.IsControl) {
		return "", badRequest("name contains control characters")
	}
	return name, nil
}
