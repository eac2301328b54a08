package repocheck

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestRepository checks the repository this package lives in, or the one
// at $REPOCHECK_ROOT (to check another checkout without changing it).
func TestRepository(t *testing.T) {
	root := os.Getenv("REPOCHECK_ROOT")
	if root == "" {
		var err error
		if root, err = moduleRoot(); err != nil {
			t.Fatal(err)
		}
	}
	problems, err := Check(root)
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, p := range problems {
		failed++
		t.Error(p)
	}
	if failed > 0 {
		t.Logf("%d references in %s lead nowhere: point them at a file and heading of the repository (docs/), or say it in your own words", failed, root)
	}
}

// TestPackageTable checks that docs/architecture.md's package table lists
// every package of the module with the module packages it imports.
func TestPackageTable(t *testing.T) {
	root := os.Getenv("REPOCHECK_ROOT")
	if root == "" {
		var err error
		if root, err = moduleRoot(); err != nil {
			t.Fatal(err)
		}
	}
	diffs, err := CheckPackageTable(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Error(d)
	}
}

// moduleRoot walks up from the working directory to the go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

func TestMarkdownRefs(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []Ref
	}{
		{"inline link", "See [the API](docs/http-api.md).", []Ref{
			{Line: 1, Kind: Link, Target: "docs/http-api.md"},
		}},
		{"link with anchor and title", `[x](a.md#b-c "title")`, []Ref{
			{Line: 1, Kind: Link, Target: "a.md#b-c"},
		}},
		{"image and same-file anchor", "![d](img/d.png) and [up](#top)", []Ref{
			{Line: 1, Kind: Link, Target: "img/d.png"},
			{Line: 1, Kind: Link, Target: "#top"},
		}},
		{"link text with code and brackets", "[`kv.db` [x]](#kvdb)", []Ref{
			{Line: 1, Kind: Link, Target: "#kvdb"},
		}},
		{"reference definition", "[api]: docs/http-api.md#errors", []Ref{
			{Line: 1, Kind: Link, Target: "docs/http-api.md#errors"},
		}},
		{"external links are links too", "[raft](https://github.com/hashicorp/raft/blob/main/api.go)", []Ref{
			{Line: 1, Kind: Link, Target: "https://github.com/hashicorp/raft/blob/main/api.go"},
		}},
		{"names in prose and code spans", "Read `ops.go` and raftnode/commit.go.", []Ref{
			{Line: 1, Kind: Name, Target: "ops.go"},
			{Line: 1, Kind: Name, Target: "raftnode/commit.go"},
		}},
		{"a link in a code span is not a link", "Write `[a](missing.md)` for a link.", []Ref{
			{Line: 1, Kind: Name, Target: "missing.md"},
		}},
		{"fenced code blocks are skipped", "```sh\ncat brief.md\n[a](b.md)\n```\n~~~\n§4\n~~~\nafter.md", []Ref{
			{Line: 8, Kind: Name, Target: "after.md"},
		}},
		{"a longer fence holds a shorter one", "````\n```\nx.md\n```\n````\ny.md", []Ref{
			{Line: 6, Kind: Name, Target: "y.md"},
		}},
		{"URLs are not names", "https://pkg.go.dev/go.etcd.io/bbolt and <https://x.org/a.md>", nil},
		{"sections", "as brief.md §5.1 says, and `guide.md`, §4; also §6", []Ref{
			{Line: 1, Kind: Name, Target: "brief.md"},
			{Line: 1, Kind: Name, Target: "guide.md"},
			{Line: 1, Kind: Section, Target: "5.1", File: "brief.md"},
			{Line: 1, Kind: Section, Target: "4", File: "guide.md"},
			{Line: 1, Kind: Section, Target: "6"},
		}},
		{"not file names", "go.mod, e.g. kv.db, .md, x.gob, pkg.go.dev", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MarkdownRefs(tt.src); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("MarkdownRefs(%q)\n got %+v\nwant %+v", tt.src, got, tt.want)
			}
		})
	}
}

func TestGoCommentRefs(t *testing.T) {
	src := `package p

// Open follows brief.md §4; see commit.go
// and docs/architecture.md.
func Open() string {
	return "brief.md" // strings are not comments: habits.md
}

/* A block: ../README.md
   §2 */
`
	want := []Ref{
		{Line: 3, Kind: Name, Target: "brief.md"},
		{Line: 3, Kind: Name, Target: "commit.go"},
		{Line: 3, Kind: Section, Target: "4", File: "brief.md"},
		{Line: 4, Kind: Name, Target: "docs/architecture.md"},
		{Line: 6, Kind: Name, Target: "habits.md"},
		{Line: 9, Kind: Name, Target: "../README.md"},
		{Line: 10, Kind: Section, Target: "2"},
	}
	if got := GoCommentRefs([]byte(src)); !reflect.DeepEqual(got, want) {
		t.Errorf("GoCommentRefs\n got %+v\nwant %+v", got, want)
	}
}

func TestSlug(t *testing.T) {
	tests := []struct{ heading, want string }{
		{"Leader no-op and readiness", "leader-no-op-and-readiness"},
		{"kv.db without fsync", "kvdb-without-fsync"},
		{"Start-up: `raftnode.catchUpFromSnapshot`", "start-up-raftnodecatchupfromsnapshot"},
		{"Linearizable reads on followers (ReadIndex)", "linearizable-reads-on-followers-readindex"},
		{"POST /v1/txn", "post-v1txn"},
		{"GET /v1/kv/{prefix}?prefix — list", "get-v1kvprefixprefix--list"},
		{"`outcome_unknown` (504)", "outcome_unknown-504"},
		{"See [the API](http-api.md) **now**", "see-the-api-now"},
		{"Über 5.1 Réplicas", "über-51-réplicas"},
	}
	for _, tt := range tests {
		if got := Slug(tt.heading); got != tt.want {
			t.Errorf("Slug(%q) = %q, want %q", tt.heading, got, tt.want)
		}
	}
}

func TestAnchorsAndSections(t *testing.T) {
	src := "# Title\n\n## 4. Running it\n\n### 5.1 Stale reads\n\n## Notes\n\n## Notes ##\n\n```\n## Not a heading\n```\n<a name=\"custom\"></a>\n#NoSpace\n"
	anchors := Anchors(src)
	for _, a := range []string{"title", "4-running-it", "51-stale-reads", "notes", "notes-1", "custom"} {
		if !anchors[a] {
			t.Errorf("anchor %q missing from %v", a, anchors)
		}
	}
	for _, a := range []string{"not-a-heading", "nospace"} {
		if anchors[a] {
			t.Errorf("anchor %q should not exist", a)
		}
	}
	if got, want := Sections(src), map[string]bool{"4": true, "5.1": true}; !reflect.DeepEqual(got, want) {
		t.Errorf("Sections = %v, want %v", got, want)
	}
}

// TestCheck runs Check on a small repository with one reference of each
// kind that resolves and one of each kind that does not.
func TestCheck(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"go.mod":    "module example.com/m\n",
		"README.md": "[guide](docs/guide.md), [run](docs/guide.md#4-running-it), [dir](docs/), [top](#m)\n# M\n",
		"docs/guide.md": "# Guide\n## 4. Running it\nSee [readme](../README.md) and [gone](gone.md), " +
			"[bad anchor](../README.md#nope), [out](../../x.md), [ext](https://example.com/a.md).\n" +
			"The code is in `p/p.go` and p.go; not in `q.go`.\n",
		"p/p.go": "package p\n\n// See guide.md §4 and docs/guide.md.\n" +
			"// Not brief.md §5.1, nor guide.md §9, nor §3.\nconst s = \"habits.md\"\n",
		"p/testdata/t.md":     "[never checked](missing.md)\n",
		"bin/ignored.md":      "[never checked](missing.md)\n",
		".git/HEAD.md":        "[never checked](missing.md)\n",
		"p/testdata/named.go": "package p\n",
	}
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	problems, err := Check(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range problems {
		got = append(got, p.String())
	}
	want := []string{
		`docs/guide.md:3: link "gone.md": no such file in the repository`,
		`docs/guide.md:3: link "../README.md#nope": no heading with anchor #nope in README.md`,
		`docs/guide.md:3: link "../../x.md": points outside the repository`,
		`docs/guide.md:4: file name "q.go": no such file in the repository`,
		`p/p.go:4: file name "brief.md": no such file in the repository`,
		`p/p.go:4: section "brief.md §5.1": no such file in the repository`,
		`p/p.go:4: section "guide.md §9": no heading numbered 9 in docs/guide.md`,
		`p/p.go:4: section "§3": a section reference must name the file it points into`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Check found\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestCheckPackageTable(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"go.mod":          "module example.com/m\n\ngo 1.22\n",
		"m.go":            "package m\n\nimport _ \"example.com/m/a\"\n",
		"a/a.go":          "package a\n\nimport _ \"fmt\"\n",
		"a/a_test.go":     "package a\n\nimport _ \"example.com/m/b\"\n",
		"b/b.go":          "package b\n\nimport (\n\t_ \"example.com/m\"\n\t_ \"example.com/m/a\"\n)\n",
		"c/c.go":          "package c\n",
		"a/testdata/x.go": "package x\n",
		PackageTableDoc: "# Doc\n\n### Packages\n\n| Package | Role | Imports |\n|---|---|---|\n" +
			"| root `m` | the root | `a` |\n" +
			"| `a` | test imports do not count | none |\n" +
			"| `b` | one import missing | root |\n" +
			"| `gone` | no such package | none |\n\n## Next\n\n| `c` | not in the table | none |\n",
	}
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := CheckPackageTable(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"docs/architecture.md: the row of b lists imports root; the code imports a, root",
		"docs/architecture.md: package c has no row in the package table",
		"docs/architecture.md: the package table has a row for gone, which is not a package of the module",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("CheckPackageTable found\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
