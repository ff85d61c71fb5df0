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

// cleanName checks name and trims it: an empty result means "make one
// up". It refuses, rather than changes, what would make a name other
// than it looks: see nameRuneProblem. Leading and trailing white space is
// trimmed; the result has at most MaxNameLen characters.
func cleanName(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", badRequest("name is not valid UTF-8")
	}
	for _, r := range name {
		if problem := nameRuneProblem(r); problem != "" {
			return "", badRequest(fmt.Sprintf("name contains %s (%U)", problem, r))
		}
	}
	name = strings.TrimSpace(name)
	if utf8.RuneCountInString(name) > MaxNameLen {
		return "", badRequest(fmt.Sprintf("name is longer than %d characters", MaxNameLen))
	}
	return name, nil
}

// nameRuneProblem says why r may not be in a name, or "" if it may. A
// name is shown on every page as one line of plain text, so it may not
// hold what would make it look other than it is, or hide part of it:
//
//   - control characters (tab and newline included);
//   - U+2028 and U+2029, line and paragraph separators;
//   - bidirectional controls (U+202A–U+202E, U+2066–U+2069, U+200E,
//     U+200F, U+061C), which reorder what follows them;
//   - zero-width characters (U+200B–U+200D, U+2060, U+FEFF), which make
//     two names that look the same differ;
//   - any other invisible format character (Unicode category Cf, such as
//     the soft hyphen or the tag characters);
//   - U+FFFD, the replacement character, which is what a decoder puts in
//     place of bytes that were not text (including a JSON \ud800 escape
//     without its pair).
func nameRuneProblem(r rune) string {
	switch {
	case unicode.IsControl(r):
		return "a control character"
	case r == '\u2028' || r == '\u2029':
		return "a line or paragraph separator"
	case r >= '\u202A' && r <= '\u202E', r >= '\u2066' && r <= '\u2069', r == '\u200E', r == '\u200F', r == '\u061C':
		return "a bidirectional control character"
	case r >= '\u200B' && r <= '\u200D', r == '\u2060', r == '\uFEFF':
		return "a zero-width character"
	case unicode.Is(unicode.Cf, r):
		return "an invisible format character"
	case r == utf8.RuneError:
		return "the replacement character (send the name as valid UTF-8)"
	}
	return ""
}
