package inventory

import (
	"fmt"
	"regexp"
	"strings"
)

// tokenID is a Proxmox API token ID: user@realm!tokenname.
var tokenID = regexp.MustCompile(`^[^\s@!=:]+@[A-Za-z][A-Za-z0-9._-]*![A-Za-z][A-Za-z0-9._-]*$`)

// CheckTokenID checks the Proxmox API token ID read from $env (from is
// where it was read, e.g. "$PM_API_TOKEN_ID"). The error never shows the
// value: an admin who pasted the whole "user@realm!name=secret" line into it
// would see the secret in the terminal and in logs.
func CheckTokenID(from, id string) error {
	if tokenID.MatchString(id) {
		return nil
	}
	if _, after, ok := strings.Cut(id, "="); ok && after != "" {
		return fmt.Errorf("%s holds more than a token ID: it has '=' and more after it, which looks like the secret; put only user@realm!tokenname there and the secret in the secret variable", from)
	}
	return fmt.Errorf("%s is not a Proxmox API token ID like provision@pve!provision (user@realm!tokenname)", from)
}
