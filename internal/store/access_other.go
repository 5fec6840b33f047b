//go:build !unix

package store

// checkWritable is a no-op where access(2) is not available: opening the
// database reports an unwritable directory instead.
func checkWritable(string) error { return nil }
