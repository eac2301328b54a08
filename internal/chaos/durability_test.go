package chaos

import (
	"strings"
	"testing"
)

func TestLedger(t *testing.T) {
	l := NewLedger()
	l.Acked("a", "a1", 5, 1)
	l.Acked("a", "a2", 9, 2)
	l.Unknown("a", "a3")
	l.Unknown("b", "b1")
	l.Acked("c", "c1", 7, 1)

	tests := []struct {
		key     string
		got     Observed
		wantErr string // "" means valid
	}{
		{"a", Observed{Found: true, Value: "a2", Mod: 9, Version: 2}, ""},
		{"a", Observed{Found: true, Value: "a3", Mod: 12, Version: 3}, ""},
		{"a", Observed{Found: true, Value: "a1", Mod: 5, Version: 1}, "lost the acknowledged write"},
		{"a", Observed{}, "is gone"},
		{"a", Observed{Found: true, Value: "zz", Mod: 12, Version: 3}, "no write of unknown outcome"},
		{"a", Observed{Found: true, Value: "a1", Mod: 9, Version: 2}, "wrote \"a2\""},
		{"a", Observed{Found: true, Value: "a2", Mod: 9, Version: 4}, "version 4"},
		{"b", Observed{}, ""},
		{"b", Observed{Found: true, Value: "b1", Mod: 3, Version: 1}, ""},
		{"b", Observed{Found: true, Value: "b2", Mod: 3, Version: 1}, "no write wrote"},
		{"c", Observed{Found: true, Value: "c1", Mod: 7, Version: 1}, ""},
		{"d", Observed{}, ""},
		{"d", Observed{Found: true, Value: "x", Version: 1}, "never written"},
	}
	for _, tt := range tests {
		err := l.Verify(tt.key, tt.got)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s %+v: unexpected error %v", tt.key, tt.got, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s %+v: got %v, want an error with %q", tt.key, tt.got, err, tt.wantErr)
		}
	}
}
