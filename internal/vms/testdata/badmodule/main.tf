# A module with deliberate mistakes: the schema check must report each one
# with its file and line. Used by TestSchemaCheckCatchesMistakes.
variable "vms" {
  type = map(object({
    cores = number
    node  = string
  }))
}

provider "proxmox" {
  pm_api_url          = "https://pve:8006/api2/json"
  pm_api_token_secret = "never-in-a-file"
  pm_parallell        = 4
}

resource "proxmox_vm_qemu" "bad" {
  for_each    = var.vms
  target_node = each.value.node
  cpu_cores   = 2
  memory      = "lots"
  onboot      = true
  cores       = each.value.cores
  tags        = each.value.tag

  cpu {
    cores = each.value.cores
  }

  disks {
    scsi {
      scsi0 {
        disk {
          storage = "local-lvm"
          sise    = "8G"
        }
      }
    }
  }

  network {
    id = 0
  }

  dynamic "serial" {
    for_each = [0]
    content {
      id   = serial.value
      kind = "socket"
    }
  }

  nic {
    bridge = "vmbr0"
  }
}
