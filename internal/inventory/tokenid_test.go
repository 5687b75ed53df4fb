package inventory_test

import (
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/inventory"
)

func TestCheckTokenID(t *testing.T) {
	const secret = "8c4e6a52-4f1b-4f33-9a4c-0d4f3a7e9b21"
	for _, tc := range []struct{ id, msg string }{
		{"root@pam!provision", ""},
		{"provision@pve!pve-sim.1", ""},
		{"root@pam!provision=" + secret, "holds more than a token ID"},
		{"PVEAPIToken=root@pam!provision=" + secret, "holds more than a token ID"},
		{"root@pam!provision " + secret, "is not a Proxmox API token ID"},
		{secret, "is not a Proxmox API token ID"},
		{"root@pam", "is not a Proxmox API token ID"},
	} {
		err := inventory.CheckTokenID("$PM_API_TOKEN_ID", tc.id)
		switch {
		case tc.msg == "" && err != nil:
			t.Errorf("%s: %v", tc.id, err)
		case tc.msg != "" && (err == nil || !strings.Contains(err.Error(), tc.msg)):
			t.Errorf("%s: error %v, want ...%s...", tc.id, err, tc.msg)
		case err != nil && (strings.Contains(err.Error(), secret[:8]) || strings.Contains(err.Error(), "root@pam")):
			t.Errorf("the error shows the value: %v", err)
		}
	}
}
