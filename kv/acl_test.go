package kv

import (
	"errors"
	"strings"
	"testing"
)

func TestACLRulesAllows(t *testing.T) {
	r := ACLRules{Read: []string{"app/"}, Write: []string{"app/config/"}}
	tests := []struct {
		right Right
		key   string
		want  bool
	}{
		{RightRead, "app/x", true},
		{RightRead, "app/", true},
		{RightRead, "app", false},
		{RightRead, "", false},
		{RightRead, "other/x", false},
		{RightRead, "app/config/a", true},
		{RightWrite, "app/config/a", true},
		{RightWrite, "app/config/", true},
		{RightWrite, "app/x", false},
		{RightWrite, "app/", false},
		{RightAdmin, "", false},
	}
	for _, tt := range tests {
		if got := r.Allows(tt.right, []byte(tt.key)); got != tt.want {
			t.Errorf("Allows(%v, %q) = %v, want %v", tt.right, tt.key, got, tt.want)
		}
	}
	root := RootRules()
	for _, right := range []Right{RightRead, RightWrite, RightAdmin} {
		if !root.Allows(right, []byte("anything")) || !root.Allows(right, nil) {
			t.Errorf("root lacks %v", right)
		}
	}
}

func TestParseBearer(t *testing.T) {
	tests := []struct {
		header, secret string
		ok, err        bool
	}{
		{"", "", false, false},
		{"Bearer abc", "abc", true, false},
		{"bearer abc", "abc", true, false},
		{"Bearer   abc", "abc", true, false},
		{"Basic abc", "", false, true},
		{"Bearer", "", false, true},
		{"Bearer ", "", false, true},
		{"Bearer a b", "", false, true},
		{"Bearer " + strings.Repeat("x", MaxSecretSize+1), "", false, true},
	}
	for _, tt := range tests {
		s, ok, err := ParseBearer(tt.header)
		if s != tt.secret || ok != tt.ok || (err != nil) != tt.err || err != nil && !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("ParseBearer(%q) = %q, %v, %v", tt.header, s, ok, err)
		}
	}
}

func TestValidateSecret(t *testing.T) {
	for _, s := range []string{"short", strings.Repeat("x", MaxSecretSize+1), "sixteen chars   ", "with\nnewline-0123456789"} {
		if ValidateSecret(s) == nil {
			t.Errorf("ValidateSecret(%q) passed", s)
		}
	}
	if err := ValidateSecret(NewSecret()); err != nil {
		t.Errorf("a new secret: %v", err)
	}
}

// FuzzParseBearer: any header parses without panicking, and a secret it
// returns is one a request may carry.
func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"", "Bearer abc", "bearer  x", "Basic x", "Bearer a b", "Bearer \t", "BEARER " + NewSecret()} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		s, ok, err := ParseBearer(header)
		switch {
		case err != nil && (ok || s != "" || !errors.Is(err, ErrUnauthenticated)):
			t.Fatalf("error %v with %q, %v", err, s, ok)
		case ok && (s == "" || len(s) > MaxSecretSize || strings.ContainsAny(s, " \t\r\n")):
			t.Fatalf("secret %q accepted", s)
		case !ok && err == nil && header != "":
			t.Fatalf("header %q neither parsed nor refused", header)
		}
	})
}
