//go:build !unix

package diskguard

import "errors"

func freeSpace(string) (uint64, error) {
	return 0, errors.New("diskguard: free space is not known on this system")
}
