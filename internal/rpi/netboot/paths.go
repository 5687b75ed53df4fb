package netboot

import (
	"fmt"
	"strings"
)

// splitPath checks a requested TFTP file name and splits it into its
// components. Refused: an absolute path, a backslash, "..", ".", an empty
// component ("a//b", a trailing "/"). The answer is a reason, never a
// guess at what was meant.
func splitPath(name string) ([]string, error) {
	switch {
	case strings.HasPrefix(name, "/"):
		return nil, fmt.Errorf("%q: absolute paths are refused (ask for SERIAL/FILE)", name)
	case strings.Contains(name, `\`):
		return nil, fmt.Errorf("%q: backslashes are refused", name)
	}
	parts := strings.Split(name, "/")
	for _, p := range parts {
		switch p {
		case "..":
			return nil, fmt.Errorf("%q: \"..\" is refused", name)
		case ".":
			return nil, fmt.Errorf("%q: \".\" is refused", name)
		case "":
			return nil, fmt.Errorf("%q: an empty path component is refused", name)
		}
	}
	return parts, nil
}
