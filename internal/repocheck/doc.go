// Package repocheck finds references, in the repository's Markdown files
// and Go comments, to files or sections the repository does not have. A
// reader of the repository must be able to follow every reference; this
// package's test walks the module and fails on each one that leads nowhere,
// so `make test` refuses a citation of a document that lives elsewhere.
//
// # What is checked
//
// In every *.md file:
//
//   - Links, inline ([text](target), ![alt](target)) and reference
//     definitions ([label]: target). A target with a scheme (https:,
//     mailto:) or starting with // is left alone. A relative target is
//     resolved against the linking file's directory (one starting with /
//     against the repository root) and must name a file or directory inside
//     the repository. A fragment on a Markdown target (architecture.md#layers,
//     or #layers for the same file) must be the anchor of one of its headings,
//     by GitHub's rules: the heading's rendered text in lower case, every
//     character that is not a letter, digit, '_', '-' or space dropped,
//     spaces turned into '-', and "-1", "-2", ... appended to repeated
//     anchors. An <a name=…> or id=… in the file counts too. A fragment on
//     any other file (a Go file's #L10) is not checked.
//   - Names of Markdown and Go files in the text (architecture.md,
//     raftnode/commit.go), in prose and in code spans alike, and section
//     references (see below).
//
// In every *.go file, the comments: names of Markdown and Go files, and
// section references. String literals are not references.
//
// A file name containing a slash must resolve against the naming file's
// directory, against the repository root, or be the trailing path of a
// file in the repository (raftkv/cli.go for cmd/raftkv/cli.go). A bare
// name (commit.go) must be the name of a file in the naming file's
// directory or anywhere in the repository: prose often names a file of the
// package it talks about without its path. Text that is part of a URL is
// not a file name.
//
// A section reference is the section sign (U+00A7) and a number, such as 4
// or 5.1. It must follow the name of a Markdown file in the repository (the
// name, an optional comma, the sign, the number) whose headings include one
// numbered that way ("## 4. Running it", "### 5.1 Stale reads"). A section
// sign with no file name before it fails: a reader cannot tell which
// document it means.
//
// # The package table
//
// CheckPackageTable compares the table under "### Packages" in
// docs/architecture.md with the code: one row per package of the module
// (first cell: the package's path inside the module in backticks, or
// "root"), and a last cell listing exactly the module packages its
// non-test code imports, or "none". A new package, or a new import between
// packages, needs its row updated in the same change.
//
// # What is not checked
//
// Fenced code blocks (``` or ~~~) in Markdown are skipped entirely: they
// hold commands, requests and output, not references. Code spans are not
// links (Markdown does not render them as links) but are read for file
// names. Only ATX headings (# Title) make anchors and sections; setext
// headings (a line underlined with === or ---) are not recognised, and
// indented code blocks are read as text. Directories named .git anywhere,
// bin and data at the root (build output and `make run`'s data) are not
// walked; testdata directories are not checked but their files count as
// files the repository has.
package repocheck
