package raftnode

import "testing"

// A follower's word spares the leader its leadership check only when the
// two of them are a quorum of the voters: in a cluster of two or three
// voters, never in one of four or more, and never for a non-voter, a
// stranger or the leader itself.
func TestPairIsQuorum(t *testing.T) {
	voter := func(id string) Server { return Server{ID: id, Voter: true} }
	nonvoter := func(id string) Server { return Server{ID: id} }
	tests := []struct {
		name    string
		servers []Server
		b       string
		want    bool
	}{
		{"three voters", []Server{voter("a"), voter("b"), voter("c")}, "b", true},
		{"two voters", []Server{voter("a"), voter("b")}, "b", true},
		{"three voters and a non-voter", []Server{voter("a"), voter("b"), voter("c"), nonvoter("d")}, "c", true},
		{"four voters", []Server{voter("a"), voter("b"), voter("c"), voter("d")}, "b", false},
		{"five voters", []Server{voter("a"), voter("b"), voter("c"), voter("d"), voter("e")}, "b", false},
		{"the asker is a non-voter", []Server{voter("a"), voter("b"), voter("c"), nonvoter("d")}, "d", false},
		{"the asker is not a member", []Server{voter("a"), voter("b"), voter("c")}, "x", false},
		{"the asker is the leader", []Server{voter("a"), voter("b"), voter("c")}, "a", false},
		{"the leader is not a voter", []Server{nonvoter("a"), voter("b"), voter("c")}, "b", false},
		{"the leader alone", []Server{voter("a")}, "b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pairIsQuorum(tt.servers, "a", tt.b); got != tt.want {
				t.Errorf("pairIsQuorum(%v, a, %s) = %v, want %v", tt.servers, tt.b, got, tt.want)
			}
		})
	}
}
