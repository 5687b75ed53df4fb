package nbdroot

// UnitName is the systemd unit that serves node's root when the exports
// run as units (provision netboot install).
func UnitName(node string) string { return "provision-netboot-root@" + node + ".service" }
