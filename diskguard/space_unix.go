//go:build unix

package diskguard

import "syscall"

// freeSpace is the space an unprivileged writer may still use on dir's
// filesystem.
func freeSpace(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
