// Package ci holds the tests of the repository's CI configuration: every
// GitHub Actions workflow under .github/workflows is checked with
// actionlint (github.com/rhysd/actionlint, used as a library), with
// shellcheck on the run: scripts when it is installed.
package ci
