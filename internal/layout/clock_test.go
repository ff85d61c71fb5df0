package layout

import (
	"bytes"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/superhero-cluster/superhero/crdt"
)

func TestClockFlags(t *testing.T) {
	tests := []struct {
		args    []string
		want    ClockFlags
		wantErr string // substring; "" means no error
	}{
		{args: nil, want: ClockFlags{MaxOffset: crdt.DefaultMaxClockOffset}},
		{args: []string{"-clock-offset", "1h"}, want: ClockFlags{Offset: time.Hour, MaxOffset: crdt.DefaultMaxClockOffset}},
		{args: []string{"-clock-offset=-3s", "-max-clock-offset=2s"}, want: ClockFlags{Offset: -3 * time.Second, MaxOffset: 2 * time.Second}},
		{args: []string{"-max-clock-offset=0"}, want: ClockFlags{}},
		{args: []string{"-max-clock-offset=-1s"}, wantErr: `invalid value "-1s" for flag -max-clock-offset: negative`},
		{args: []string{"-max-clock-offset=soon"}, wantErr: `invalid value "soon" for flag -max-clock-offset`},
		{args: []string{"-clock-offset=x"}, wantErr: `invalid value "x" for flag -clock-offset`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			fs := flag.NewFlagSet("node", flag.ContinueOnError)
			var out bytes.Buffer
			fs.SetOutput(&out)
			c := ClockFlags{Offset: time.Minute, MaxOffset: -1} // Register resets these
			c.Register(fs)
			err := fs.Parse(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) = %v, want an error containing %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.args, err)
			}
			if c != tt.want {
				t.Fatalf("Parse(%q) = %+v, want %+v", tt.args, c, tt.want)
			}
		})
	}
}

func TestClockFlagsUsage(t *testing.T) {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	var out bytes.Buffer
	fs.SetOutput(&out)
	var c ClockFlags
	c.Register(fs)
	fs.PrintDefaults()
	for _, want := range []string{
		"-clock-offset duration",
		"-max-clock-offset duration",
		"(default 500ms)",
		"0 turns the check off",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out.String())
		}
	}
}

func TestClockFlagsPhys(t *testing.T) {
	for _, off := range []time.Duration{0, time.Hour, -90 * time.Second} {
		c := ClockFlags{Offset: off}
		phys := c.Phys()
		c.Offset = 0 // Phys keeps the offset it was made with
		before := time.Now().UnixNano()
		got := phys()
		after := time.Now().UnixNano()
		if got < before+int64(off) || got > after+int64(off) {
			t.Errorf("offset %v: Phys() = %d, want within [%d, %d]", off, got, before+int64(off), after+int64(off))
		}
	}
}

func TestClockFlagsEngineMaxOffset(t *testing.T) {
	for _, tc := range []struct {
		flag time.Duration
		want time.Duration
	}{{0, -1}, {time.Second, time.Second}, {crdt.DefaultMaxClockOffset, crdt.DefaultMaxClockOffset}} {
		if got := (ClockFlags{MaxOffset: tc.flag}).EngineMaxOffset(); got != tc.want {
			t.Errorf("-max-clock-offset %v: engine gets %v, want %v", tc.flag, got, tc.want)
		}
	}
}
