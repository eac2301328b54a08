package repocheck

import (
	"fmt"
	"go/scanner"
	"go/token"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Kind says what a Ref is.
type Kind int

const (
	// Link is the target of a Markdown link, as written.
	Link Kind = iota + 1
	// Name is the name of a Markdown or Go file in text or a comment.
	Name
	// Section is a section reference (the section sign and a number);
	// File is the file named before it, if any.
	Section
)

func (k Kind) String() string {
	switch k {
	case Link:
		return "link"
	case Name:
		return "file name"
	case Section:
		return "section"
	}
	return "kind " + strconv.Itoa(int(k))
}

// Ref is one reference found in a file.
type Ref struct {
	Line   int    // 1-based line of the reference
	Kind   Kind   // what it is
	Target string // the link target, the file name, or the section number
	File   string // for a Section: the file named before the sign, "" if none
}

// Problem is a reference that does not resolve.
type Problem struct {
	File string // slash-separated path relative to the repository root
	Ref  Ref
	Why  string
}

func (p Problem) String() string {
	what := p.Ref.Target
	if p.Ref.Kind == Section {
		what = strings.TrimSpace(p.Ref.File + " §" + p.Ref.Target)
	}
	return fmt.Sprintf("%s:%d: %s %q: %s", p.File, p.Ref.Line, p.Ref.Kind, what, p.Why)
}

// Check walks the repository at root and returns every reference in its
// Markdown files and Go comments that does not resolve, in file order.
func Check(root string) ([]Problem, error) {
	r, err := load(root)
	if err != nil {
		return nil, err
	}
	var out []Problem
	for _, name := range r.checked {
		src, err := os.ReadFile(filepath.Join(r.root, filepath.FromSlash(name)))
		if err != nil {
			return nil, err
		}
		var refs []Ref
		if strings.HasSuffix(name, ".md") {
			refs = MarkdownRefs(string(src))
		} else {
			refs = GoCommentRefs(src)
		}
		for _, ref := range refs {
			if why := r.resolve(name, ref); why != "" {
				out = append(out, Problem{File: name, Ref: ref, Why: why})
			}
		}
	}
	return out, nil
}

// repo is what the repository holds: its files and directories, and the
// anchors and sections of its Markdown files (read when first needed).
type repo struct {
	root     string
	paths    map[string]bool // files and directories, slash-separated, relative
	files    []string        // every file, for trailing-path matches
	bases    map[string]bool // base names of files
	checked  []string        // the .md and .go files to check
	anchors  map[string]map[string]bool
	sections map[string]map[string]bool
}

func load(root string) (*repo, error) {
	r := &repo{
		root:     root,
		paths:    map[string]bool{".": true},
		bases:    map[string]bool{},
		anchors:  map[string]map[string]bool{},
		sections: map[string]map[string]bool{},
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if d.IsDir() {
			if d.Name() == ".git" || rel == "bin" || rel == "data" {
				return filepath.SkipDir
			}
			r.paths[rel] = true
			return nil
		}
		r.paths[rel] = true
		r.files = append(r.files, rel)
		r.bases[path.Base(rel)] = true
		if inTestdata(rel) {
			return nil
		}
		if strings.HasSuffix(rel, ".md") || strings.HasSuffix(rel, ".go") {
			r.checked = append(r.checked, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("repocheck: walk %s: %w", root, err)
	}
	return r, nil
}

func inTestdata(rel string) bool {
	return slices.Contains(strings.Split(rel, "/"), "testdata")
}

// resolve returns why ref, found in file from, does not resolve, or "".
func (r *repo) resolve(from string, ref Ref) string {
	switch ref.Kind {
	case Link:
		return r.resolveLink(from, ref.Target)
	case Name:
		if len(r.findName(from, ref.Target)) == 0 {
			return "no such file in the repository"
		}
		return ""
	case Section:
		if ref.File == "" {
			return "a section reference must name the file it points into"
		}
		if ref.Target == "" {
			return "a section sign must be followed by a section number"
		}
		found := r.findName(from, ref.File)
		if len(found) == 0 {
			return "no such file in the repository"
		}
		for _, f := range found {
			if strings.HasSuffix(f, ".md") && r.sectionsOf(f)[ref.Target] {
				return ""
			}
		}
		return "no heading numbered " + ref.Target + " in " + strings.Join(found, ", ")
	}
	return "unknown reference kind"
}

var schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)

func (r *repo) resolveLink(from, target string) string {
	if schemeRE.MatchString(target) || strings.HasPrefix(target, "//") {
		return ""
	}
	p, frag, _ := strings.Cut(target, "#")
	p, err := url.PathUnescape(p)
	if err != nil {
		return "malformed link: " + err.Error()
	}
	file := from
	if p != "" {
		if strings.HasPrefix(p, "/") {
			file = path.Clean(strings.TrimPrefix(p, "/"))
		} else {
			file = path.Join(path.Dir(from), p)
		}
		if file == ".." || strings.HasPrefix(file, "../") {
			return "points outside the repository"
		}
		if file == "" {
			file = "."
		}
		if !r.paths[file] {
			return "no such file in the repository"
		}
	}
	if frag == "" || !strings.HasSuffix(file, ".md") {
		return ""
	}
	if f, err := url.PathUnescape(frag); err == nil {
		frag = f
	}
	if !r.anchorsOf(file)[frag] {
		return "no heading with anchor #" + frag + " in " + file
	}
	return ""
}

// findName returns the repository files a file name may mean, seen from
// file from (see the package documentation).
func (r *repo) findName(from, name string) []string {
	name = strings.TrimPrefix(name, "./")
	var out []string
	add := func(p string) {
		if r.paths[p] && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if strings.Contains(name, "/") {
		if j := path.Join(path.Dir(from), name); !strings.HasPrefix(j, "../") {
			add(j)
		}
		add(path.Clean(name))
		for _, f := range r.files {
			if strings.HasSuffix(f, "/"+name) {
				add(f)
			}
		}
		return out
	}
	add(path.Join(path.Dir(from), name))
	if r.bases[name] {
		for _, f := range r.files {
			if path.Base(f) == name {
				add(f)
			}
		}
	}
	return out
}

func (r *repo) anchorsOf(file string) map[string]bool {
	if a, ok := r.anchors[file]; ok {
		return a
	}
	src, _ := os.ReadFile(filepath.Join(r.root, filepath.FromSlash(file)))
	a := Anchors(string(src))
	r.anchors[file] = a
	return a
}

func (r *repo) sectionsOf(file string) map[string]bool {
	if s, ok := r.sections[file]; ok {
		return s
	}
	src, _ := os.ReadFile(filepath.Join(r.root, filepath.FromSlash(file)))
	s := Sections(string(src))
	r.sections[file] = s
	return s
}

// mdLines splits Markdown into lines and reports, for each, whether it is
// part of a fenced code block (the fences included).
func mdLines(src string) (lines []string, fenced []bool) {
	lines = strings.Split(src, "\n")
	fenced = make([]bool, len(lines))
	var fence string // the opening fence while inside a block
	for i, l := range lines {
		t := strings.TrimLeft(l, " \t>")
		if fence == "" {
			if f := fenceOf(t); f != "" {
				fence = f
				fenced[i] = true
			}
			continue
		}
		fenced[i] = true
		if f := fenceOf(t); f != "" && f[0] == fence[0] && len(f) >= len(fence) && strings.TrimSpace(t[len(f):]) == "" {
			fence = ""
		}
	}
	return lines, fenced
}

// fenceOf returns the run of three or more backticks or tildes that starts
// t, or "".
func fenceOf(t string) string {
	if len(t) < 3 || (t[0] != '`' && t[0] != '~') {
		return ""
	}
	n := 0
	for n < len(t) && t[n] == t[0] {
		n++
	}
	if n < 3 {
		return ""
	}
	return t[:n]
}

// codeSpans returns the byte ranges [start, end) of the inline code spans
// of one line, backticks included. An unmatched run of backticks is text.
func codeSpans(l string) [][2]int {
	var out [][2]int
	for i := 0; i < len(l); {
		if l[i] != '`' {
			i++
			continue
		}
		n := 0
		for i+n < len(l) && l[i+n] == '`' {
			n++
		}
		closed := false
		for j := i + n; j < len(l); {
			if l[j] != '`' {
				j++
				continue
			}
			m := 0
			for j+m < len(l) && l[j+m] == '`' {
				m++
			}
			if m == n {
				out = append(out, [2]int{i, j + m})
				i, closed = j+m, true
				break
			}
			j += m
		}
		if !closed {
			i += n
		}
	}
	return out
}

// blank replaces the bytes of l in [start, end) with spaces, keeping
// offsets.
func blank(l string, start, end int) string {
	return l[:start] + strings.Repeat(" ", end-start) + l[end:]
}

var (
	// inlineLinkRE matches [text](target "title") and images; text may hold
	// one level of nested brackets.
	inlineLinkRE = regexp.MustCompile(`!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s<>]*)>?(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)`)
	// refDefRE matches a link reference definition.
	refDefRE = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*<?([^\s<>]+)>?`)
	// urlRE matches URLs and autolinks in text, which are not file names.
	urlRE = regexp.MustCompile(`(?:[A-Za-z][A-Za-z0-9+.-]*://|mailto:|www\.)[^\s<>()\x60"']*`)
	// wordRE matches runs that may be file paths.
	wordRE = regexp.MustCompile(`[A-Za-z0-9_./-]+`)
	// sectionRE matches a section sign and the number after it.
	sectionRE = regexp.MustCompile(`§\s*([0-9]+(?:\.[0-9]+)*)?`)
	// fileBeforeRE matches a file name just before a section sign, with an
	// optional closing backtick and comma between them.
	fileBeforeRE = regexp.MustCompile(`([A-Za-z0-9_./-]+\.(?:md|go))\x60?\s*,?\s*$`)
)

// MarkdownRefs returns the links, file names and section references of a
// Markdown document, outside its fenced code blocks.
func MarkdownRefs(src string) []Ref {
	lines, fenced := mdLines(src)
	var out []Ref
	for i, l := range lines {
		if fenced[i] {
			continue
		}
		n := i + 1
		// Links are looked for with code spans blanked out: `[a](b)` is code.
		noCode := l
		for _, s := range codeSpans(l) {
			noCode = blank(noCode, s[0], s[1])
		}
		text := l // what is left to read for names: link targets blanked
		if m := refDefRE.FindStringSubmatchIndex(noCode); m != nil {
			out = append(out, Ref{Line: n, Kind: Link, Target: noCode[m[2]:m[3]]})
			text = blank(text, m[2], m[3])
		}
		for _, m := range inlineLinkRE.FindAllStringSubmatchIndex(noCode, -1) {
			if m[3] > m[2] {
				out = append(out, Ref{Line: n, Kind: Link, Target: noCode[m[2]:m[3]]})
				text = blank(text, m[2], m[3])
			}
		}
		out = append(out, textRefs(text, n)...)
	}
	return out
}

// textRefs returns the file names and section references in one line of
// text (prose or a comment) numbered n.
func textRefs(l string, n int) []Ref {
	for _, m := range urlRE.FindAllStringIndex(l, -1) {
		l = blank(l, m[0], m[1])
	}
	var out []Ref
	for _, m := range wordRE.FindAllStringIndex(l, -1) {
		w := strings.TrimRight(l[m[0]:m[1]], ".-/")
		if isFileName(w) {
			out = append(out, Ref{Line: n, Kind: Name, Target: w})
		}
	}
	for _, m := range sectionRE.FindAllStringSubmatchIndex(l, -1) {
		ref := Ref{Line: n, Kind: Section}
		if m[2] >= 0 {
			ref.Target = l[m[2]:m[3]]
		}
		if f := fileBeforeRE.FindStringSubmatch(l[:m[0]]); f != nil {
			ref.File = f[1]
		}
		out = append(out, ref)
	}
	return out
}

// isFileName reports whether w names a Markdown or Go file: a non-empty
// name ending in .md or .go.
func isFileName(w string) bool {
	for _, ext := range []string{".md", ".go"} {
		if name, ok := strings.CutSuffix(w, ext); ok {
			base := path.Base(name)
			return base != "" && base != "." && strings.Trim(base, ".") != ""
		}
	}
	return false
}

// GoCommentRefs returns the file names and section references in the
// comments of a Go source file. A file that does not scan cleanly still
// yields the references of the comments scanned.
func GoCommentRefs(src []byte) []Ref {
	fset := token.NewFileSet()
	file := fset.AddFile("", fset.Base(), len(src))
	var s scanner.Scanner
	s.Init(file, src, func(token.Position, string) {}, scanner.ScanComments)
	var out []Ref
	for {
		pos, tok, lit := s.Scan()
		if tok == token.EOF {
			return out
		}
		if tok != token.COMMENT {
			continue
		}
		line := fset.Position(pos).Line
		for i, l := range strings.Split(lit, "\n") {
			out = append(out, textRefs(l, line+i)...)
		}
	}
}

var (
	atxRE     = regexp.MustCompile(`^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$`)
	htmlIDRE  = regexp.MustCompile(`<a\s[^>]*\b(?:name|id)\s*=\s*"([^"]+)"`)
	mdLinkRE  = regexp.MustCompile(`!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)`)
	htmlTagRE = regexp.MustCompile(`<[^>]+>`)
	sectNumRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)*)\.?(?:\s|$)`)
)

// headings returns the text of a Markdown document's ATX headings, outside
// fenced code blocks.
func headings(src string) []string {
	lines, fenced := mdLines(src)
	var out []string
	for i, l := range lines {
		if fenced[i] {
			continue
		}
		if m := atxRE.FindStringSubmatch(l); m != nil {
			out = append(out, m[2])
		}
	}
	return out
}

// Anchors returns the anchors a Markdown document's headings get on GitHub
// (see Slug), with repeats numbered, plus the names of HTML anchors.
func Anchors(src string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	for _, h := range headings(src) {
		s := Slug(h)
		if k := seen[s]; k > 0 {
			out[s+"-"+strconv.Itoa(k)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	for _, m := range htmlIDRE.FindAllStringSubmatch(src, -1) {
		out[m[1]] = true
	}
	return out
}

// Slug is the anchor GitHub gives a heading: its rendered text (links and
// code spans reduced to their text, emphasis markers and HTML tags
// dropped) in lower case, with every character that is not a letter, mark,
// digit, connector ('_'), '-' or space removed and each space turned into
// '-'.
func Slug(heading string) string {
	t := mdLinkRE.ReplaceAllString(heading, "$1")
	t = htmlTagRE.ReplaceAllString(t, "")
	t = strings.ToLower(t)
	var b strings.Builder
	for _, r := range t {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.Pc):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Sections returns the numbers of a Markdown document's numbered headings
// ("## 4. Running it" → "4", "### 5.1 Stale reads" → "5.1").
func Sections(src string) map[string]bool {
	out := map[string]bool{}
	for _, h := range headings(src) {
		if m := sectNumRE.FindStringSubmatch(h); m != nil {
			out[m[1]] = true
		}
	}
	return out
}
