package repocheck

import (
	"bufio"
	"errors"
	"fmt"
	"go/build"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// PackageTableDoc is the Markdown file, relative to the repository root,
// whose package table CheckPackageTable compares with the code.
const PackageTableDoc = "docs/architecture.md"

// packageTableHeading is the heading the table follows.
const packageTableHeading = "### Packages"

// CheckPackageTable compares the package table of PackageTableDoc with the
// module at root: every package must have exactly one row, every row must
// name a package, and a row's last column must list exactly the packages
// of the module that the package's non-test code imports (on this
// platform), or "none". Packages are written as paths relative to the
// module in backticks; the root package is written "root". It returns one
// message per difference.
func CheckPackageTable(root string) ([]string, error) {
	module, err := modulePath(root)
	if err != nil {
		return nil, err
	}
	actual, err := moduleImports(root, module)
	if err != nil {
		return nil, err
	}
	rows, err := packageTable(filepath.Join(root, filepath.FromSlash(PackageTableDoc)))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, pkg := range sortedKeys(actual) {
		row, ok := rows[pkg]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s: package %s has no row in the package table", PackageTableDoc, pkg))
		case !slices.Equal(row, actual[pkg]):
			out = append(out, fmt.Sprintf("%s: the row of %s lists imports %s; the code imports %s",
				PackageTableDoc, pkg, listOrNone(row), listOrNone(actual[pkg])))
		}
	}
	for _, pkg := range sortedKeys(rows) {
		if _, ok := actual[pkg]; !ok {
			out = append(out, fmt.Sprintf("%s: the package table has a row for %s, which is not a package of the module", PackageTableDoc, pkg))
		}
	}
	return out, nil
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// modulePath reads the module path from root/go.mod.
func modulePath(root string) (string, error) {
	f, err := os.Open(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("repocheck: %w", err)
	}
	defer func() { _ = f.Close() }() // read-only
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(m), `"`), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("repocheck: go.mod: %w", err)
	}
	return "", errors.New("repocheck: go.mod has no module line")
}

// shortName is a package's name in the table: its path inside the module,
// or "root".
func shortName(module, importPath string) (string, bool) {
	if importPath == module {
		return "root", true
	}
	rel, ok := strings.CutPrefix(importPath, module+"/")
	return rel, ok
}

// moduleImports maps every package of the module (by short name) to the
// module packages its non-test code imports, sorted.
func moduleImports(root, module string) (map[string][]string, error) {
	out := map[string][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		name := d.Name()
		if rel != "." && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || rel == "bin" || rel == "data") {
			return filepath.SkipDir
		}
		pkg, err := build.ImportDir(p, 0)
		var noGo *build.NoGoError
		if errors.As(err, &noGo) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("repocheck: %s: %w", rel, err)
		}
		short := "root"
		if rel != "." {
			short = rel
		}
		imports := []string{}
		for _, imp := range pkg.Imports {
			if s, ok := shortName(module, imp); ok {
				imports = append(imports, s)
			}
		}
		slices.Sort(imports)
		out[short] = imports
		return nil
	})
	return out, err
}

var (
	tableRowRE = regexp.MustCompile(`^\|(.*)\|\s*$`)
	codeRE     = regexp.MustCompile("`([^`]+)`")
)

// packageTable reads the table after packageTableHeading: the first cell
// names the package, the last its imports.
func packageTable(file string) (map[string][]string, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("repocheck: %w", err)
	}
	lines := strings.Split(string(src), "\n")
	start := slices.IndexFunc(lines, func(l string) bool { return strings.TrimSpace(l) == packageTableHeading })
	if start < 0 {
		return nil, fmt.Errorf("repocheck: %s has no %q heading", file, packageTableHeading)
	}
	rows := map[string][]string{}
	inTable := false
	for _, l := range lines[start+1:] {
		m := tableRowRE.FindStringSubmatch(l)
		if m == nil {
			if inTable || strings.HasPrefix(l, "#") {
				break
			}
			continue
		}
		inTable = true
		cells := strings.Split(m[1], "|")
		first, last := strings.TrimSpace(cells[0]), strings.TrimSpace(cells[len(cells)-1])
		if strings.Trim(first, "-: ") == "" || first == "Package" {
			continue // header and delimiter rows
		}
		pkg := "root"
		if !strings.HasPrefix(first, "root") {
			c := codeRE.FindStringSubmatch(first)
			if c == nil {
				return nil, fmt.Errorf("repocheck: %s: package cell %q names no package in backticks", file, first)
			}
			pkg = path.Clean(c[1])
		}
		if _, dup := rows[pkg]; dup {
			return nil, fmt.Errorf("repocheck: %s: two rows for %s", file, pkg)
		}
		imports := []string{}
		if last != "none" {
			for _, part := range strings.Split(last, ",") {
				part = strings.TrimSpace(part)
				if part == "root" {
					imports = append(imports, "root")
					continue
				}
				c := codeRE.FindStringSubmatch(part)
				if c == nil {
					return nil, fmt.Errorf("repocheck: %s: imports cell of %s: %q is not `package` or root", file, pkg, part)
				}
				imports = append(imports, c[1])
			}
		}
		slices.Sort(imports)
		rows[pkg] = imports
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("repocheck: %s: no table after %q", file, packageTableHeading)
	}
	return rows, nil
}
