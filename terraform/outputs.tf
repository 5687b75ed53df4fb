output "vms" {
  description = "Each VM's id, Proxmox host, VMID and address."
  value = {
    for name, vm in proxmox_vm_qemu.vm : name => {
      id   = vm.id
      node = vm.target_node
      vmid = vm.vmid
      ip   = vm.default_ipv4_address
    }
  }
}
