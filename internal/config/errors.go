package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Error is what Load returns when a configuration cannot be used. It carries
// every problem found, not just the first, so a user fixes them in one pass;
// callers that want positions (an editor, `switchboard config check`) take
// the diagnostics with errors.As.
type Error struct {
	// Diagnostics are the problems, in the order they were found.
	Diagnostics hcl.Diagnostics
}

// Error renders one line per diagnostic, as FormatDiagnostics does.
func (e *Error) Error() string { return FormatDiagnostics(e.Diagnostics) }

// Unwrap exposes the diagnostics, so errors.As(err, &hcl.Diagnostics{}) works
// for code that only knows hcl.
func (e *Error) Unwrap() error { return e.Diagnostics }

// FormatDiagnostics renders diagnostics one per line as
// "file:line:col: summary: detail", or "file: summary: detail" when a
// diagnostic names a file but no position, or "summary: detail" when it is not
// about a file at all (an environment variable). Warnings carry "warning: "
// after the position. It is the format of Error.Error and of
// `switchboard config check`.
func FormatDiagnostics(diags hcl.Diagnostics) string {
	lines := make([]string, 0, len(diags))
	for _, d := range diags {
		lines = append(lines, formatDiagnostic(d))
	}
	return strings.Join(lines, "\n")
}

func formatDiagnostic(d *hcl.Diagnostic) string {
	var b strings.Builder
	if s := d.Subject; s != nil && s.Filename != "" {
		if s.Start.Line > 0 {
			fmt.Fprintf(&b, "%s:%d:%d: ", s.Filename, s.Start.Line, s.Start.Column)
		} else {
			fmt.Fprintf(&b, "%s: ", s.Filename)
		}
	}
	if d.Severity == hcl.DiagWarning {
		b.WriteString("warning: ")
	}
	b.WriteString(oneLine(d.Summary))
	if detail := oneLine(d.Detail); detail != "" {
		b.WriteString(": ")
		b.WriteString(detail)
	}
	return b.String()
}

// oneLine folds the multi-line details some hcl diagnostics carry, so that
// every diagnostic stays on one line of output.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// sortDiagnostics orders diagnostics by file, in the order the files were
// first reported on, and by position within a file, so a user reads them
// top to bottom. Diagnostics about no file (the environment) form a group
// of their own.
func sortDiagnostics(diags hcl.Diagnostics) hcl.Diagnostics {
	group := make(map[string]int)
	key := func(d *hcl.Diagnostic) (string, hcl.Pos) {
		if d.Subject == nil {
			return "", hcl.Pos{}
		}
		return d.Subject.Filename, d.Subject.Start
	}
	for _, d := range diags {
		name, _ := key(d)
		if _, ok := group[name]; !ok {
			group[name] = len(group)
		}
	}
	sorted := slices.Clone(diags)
	slices.SortStableFunc(sorted, func(a, b *hcl.Diagnostic) int {
		an, ap := key(a)
		bn, bp := key(b)
		return cmp.Or(
			cmp.Compare(group[an], group[bn]),
			cmp.Compare(ap.Line, bp.Line),
			cmp.Compare(ap.Column, bp.Column),
		)
	})
	return sorted
}

// errorDiag builds an error diagnostic anchored at rng; a zero rng (as for
// environment variables) leaves the diagnostic without a subject.
func errorDiag(rng hcl.Range, summary, detail string) *hcl.Diagnostic {
	d := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail}
	if rng.Filename != "" {
		d.Subject = rng.Ptr()
	}
	return d
}

// fileRange is a range that names a file but no position in it.
func fileRange(filename string) hcl.Range { return hcl.Range{Filename: filename} }

// shortPos renders where something was declared for use inside a message,
// e.g. "models.hcl:12". The full path already leads the diagnostic line.
func shortPos(rng hcl.Range) string {
	name := rng.Filename
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	return fmt.Sprintf("%s:%d", name, rng.Start.Line)
}
