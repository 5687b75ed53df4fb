# One VM per entry of var.vms: a full clone of the cloud-init template with
# the same hardware, its own size, a static address and cloud-init from
# snippets that provision uploads (over SFTP) before Terraform runs.
resource "proxmox_vm_qemu" "vm" {
  for_each = var.vms

  name        = each.key
  description = "${var.lab}: ${each.value.role} VM, managed by provision (Terraform)."
  target_node = each.value.target_node
  vmid        = each.value.vmid # explicit: no /cluster/nextid race
  clone       = var.template    # the template of that name on the target node
  full_clone  = true
  tags        = join(";", each.value.tags)

  start_at_node_boot = true
  vm_state           = "running"

  # The provider reads this block back with these defaults (-1: any order,
  # PVE's default delays); left out, every plan would show it as a change.
  startup_shutdown {
    order            = -1
    shutdown_timeout = -1
    startup_delay    = -1
  }

  qemu_os = var.hardware.qemu_os
  bios    = var.hardware.bios
  scsihw  = var.hardware.scsihw # unset, the provider would switch to lsi
  boot    = var.hardware.boot
  agent   = var.hardware.agent
  memory  = each.value.memory

  cpu {
    cores   = each.value.cores
    sockets = 1
    type    = "x86-64-v2-AES" # not "host": VMs can move between unlike CPUs
  }

  # Every template disk, in its own slot: undeclared disks are detached.
  disks {
    scsi {
      scsi0 {
        disk {
          storage = each.value.disk_storage
          size    = each.value.disk_size
        }
      }
    }
    ide {
      ide2 {
        cloudinit {
          storage = var.hardware.cloudinit_storage
        }
      }
    }
  }

  network {
    id     = 0 # required by the provider since 3.0.1-rc5
    model  = var.hardware.net_model
    bridge = each.value.bridge # the default "nat" is no bridge
  }

  serial {
    id   = 0
    type = var.hardware.serial0
  }

  vga {
    type = var.hardware.vga
  }

  # A static address: the provider knows the IP without asking the guest
  # agent. Users, keys and packages come from the user-data snippet.
  ipconfig0  = each.value.ipconfig0
  nameserver = each.value.nameserver
  cicustom   = each.value.cicustom

  # Proxmox does not track snippet content: a new hash recreates the VM.
  force_recreate_on_change_of = each.value.snippets_sha

  define_connection_info = true
  skip_ipv6              = true # the lab LAN is IPv4: do not wait for an IPv6 address
  clone_wait             = var.clone_wait
  additional_wait        = var.additional_wait
}
