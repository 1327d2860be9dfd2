//go:build !linux

package ledgertest

import "testing"

// Tmpfs needs Linux: elsewhere the test is skipped, saying why.
func Tmpfs(t testing.TB, size int) string {
	t.Skip("a tmpfs to fill needs Linux")
	return ""
}

// FillDisk is not reached: Tmpfs skips first.
func FillDisk(t testing.TB, dir string) string {
	t.Skip("a tmpfs to fill needs Linux")
	return ""
}
