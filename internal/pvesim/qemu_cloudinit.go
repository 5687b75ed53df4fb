package pvesim

// Cloud-init drives.

import "fmt"

// cloudinitVolid is the cloud-init drive volume PVE allocates for vmid.
func cloudinitVolid(st *Storage, vmid int) string {
	if fileBased(st.Type) {
		return fmt.Sprintf("%s:%d/vm-%d-cloudinit.qcow2", st.ID, vmid, vmid)
	}
	return fmt.Sprintf("%s:vm-%d-cloudinit", st.ID, vmid)
}
