package hosts

import (
	"fmt"
	"strings"

	"github.com/fhlab/provision/internal/inventory"
)

// Bootstrap is a script for a host provision cannot reach yet: run as root
// there, it creates the login user when missing, trusts the inventory's
// public keys and gives the user sudo without a password. Only public keys
// are in it. Everything else is `provision hosts apply`'s.
func Bootstrap(n inventory.Node, keys []string) string {
	var b strings.Builder
	user := shellQuote(n.SSHUser)
	fmt.Fprintf(&b, "#!/bin/sh\n# provision hosts bootstrap %s: run as root on %s, then: provision hosts apply\nset -eu\n", n.Name, n.IP)
	fmt.Fprintf(&b, "u=%s\n", user)
	b.WriteString(`if [ "$u" != root ] && ! id "$u" >/dev/null 2>&1; then useradd --create-home --shell /bin/bash "$u"; fi
home=$(getent passwd "$u" | cut -d: -f6)
install -d -m 700 -o "$u" -g "$(id -gn "$u")" "$home/.ssh"
touch "$home/.ssh/authorized_keys"
for key in \
`)
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s \\\n", shellQuote(k))
	}
	b.WriteString(`; do
  grep -qxF "$key" "$home/.ssh/authorized_keys" || printf '%s\n' "$key" >> "$home/.ssh/authorized_keys"
done
chown "$u" "$home/.ssh/authorized_keys"; chmod 600 "$home/.ssh/authorized_keys"
if [ "$u" != root ]; then
  printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$u" > /etc/sudoers.d/90-provision
  chmod 440 /etc/sudoers.d/90-provision
fi
echo "provision can now log in as $u"
`)
	return b.String()
}
