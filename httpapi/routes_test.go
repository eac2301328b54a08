package httpapi

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docRoute is a method and path docs/http-api.md describes, and where.
type docRoute struct{ method, path string }

// The route table and docs/http-api.md describe the same routes.
//
// The matching rule: the docs describe a route (a method and a path) when
// they name it both in a row of the route table at the top ("| `GET` |
// `/v1/kv/{key}` | ..."; one row may list several paths, "`/livez`,
// `/readyz`") and in a section heading ("## GET /v1/kv/{key}"; one heading
// may list several paths, "## GET /livez, /readyz, /metrics"). Paths are
// compared without their query ("{prefix}?prefix" is "{prefix}") and with
// every "{name}" the same wildcard, so "/v1/kv/{prefix}" is the route
// "/v1/kv/{key}". A documented path ending in "…" stands for the routes
// under it ("/debug/pprof/…"). A route that takes any method (Go's pprof
// handlers, "*") is described by a row and a heading with any method.
//
// The test fails on a route the handler serves that the docs do not
// describe so, and on a method and path the docs name, in a row or a
// heading, that the handler does not serve.
func TestDocsDescribeEveryRoute(t *testing.T) {
	h, err := New(Config{Backend: follower{}, Pprof: true})
	if err != nil {
		t.Fatal(err)
	}
	rows, headings := docRoutes(t, "../docs/http-api.md")
	if len(rows) == 0 || len(headings) == 0 {
		t.Fatalf("found %d route rows and %d route headings in docs/http-api.md: has its layout changed?", len(rows), len(headings))
	}

	var served []docRoute
	for _, rt := range h.routes {
		for m := range rt.methods {
			served = append(served, docRoute{m, rt.pattern})
		}
	}
	for _, s := range served {
		if !slices.ContainsFunc(rows, s.describedBy) {
			t.Errorf("%s %s is served but has no row in the route table of docs/http-api.md", s.method, s.path)
		}
		if !slices.ContainsFunc(headings, s.describedBy) {
			t.Errorf("%s %s is served but has no section (## %s %s) in docs/http-api.md", s.method, s.path, s.method, s.path)
		}
	}
	for _, list := range []struct {
		where  string
		routes []docRoute
	}{{"row", rows}, {"heading", headings}} {
		for _, d := range list.routes {
			if !slices.ContainsFunc(served, func(s docRoute) bool { return s.describedBy(d) }) {
				t.Errorf("docs/http-api.md has a %s for %s %s, which the handler does not serve", list.where, d.method, d.path)
			}
		}
	}
}

// describedBy reports whether the documented d names the served route s.
func (s docRoute) describedBy(d docRoute) bool {
	if s.method != "*" && s.method != d.method {
		return false
	}
	sp, dp := normalPath(s.path), normalPath(d.path)
	if prefix, ok := strings.CutSuffix(dp, "…"); ok {
		return strings.HasPrefix(sp, prefix)
	}
	return sp == dp
}

var wildcard = regexp.MustCompile(`\{[^}]*\}`)

// normalPath drops a path's query and makes every {name} alike.
func normalPath(p string) string {
	p, _, _ = strings.Cut(p, "?")
	return wildcard.ReplaceAllString(p, "{}")
}

var (
	methodRE  = `(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)`
	rowRE     = regexp.MustCompile("^\\| `" + methodRE + "` \\| ([^|]+) \\|")
	headingRE = regexp.MustCompile(`^## ` + methodRE + ` (/.*)$`)
)

// docRoutes reads the routes named in the table rows and the section
// headings of the API document at file.
func docRoutes(t *testing.T, file string) (rows, headings []docRoute) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if m := rowRE.FindStringSubmatch(line); m != nil {
			for p := range strings.SplitSeq(m[2], ",") {
				p = strings.Trim(strings.TrimSpace(p), "`")
				rows = append(rows, docRoute{m[1], p})
			}
		}
		if m := headingRE.FindStringSubmatch(line); m != nil {
			paths, _, _ := strings.Cut(m[2], " — ") // "## GET /v1/kv/{prefix}?prefix — list"
			for p := range strings.SplitSeq(paths, ",") {
				headings = append(headings, docRoute{m[1], strings.TrimSpace(p)})
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows, headings
}
