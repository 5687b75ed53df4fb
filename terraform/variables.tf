# provision writes vms.auto.tfvars.json next to these files from the
# inventory; edit the inventory, not the generated file.

variable "pm_api_url" {
  description = "Proxmox API URL, ending in /api2/json (inventory proxmox.apiURL)."
  type        = string

  validation {
    condition     = endswith(var.pm_api_url, "/api2/json")
    error_message = "The Proxmox API URL must end in /api2/json."
  }
}

variable "pm_tls_insecure" {
  description = "Skip TLS verification of the Proxmox API (inventory proxmox.insecure)."
  type        = bool
  default     = false
}

variable "pm_parallel" {
  description = "How many VMs the provider creates, reads or updates at once."
  type        = number
  default     = 4
}

variable "pm_timeout" {
  description = "Seconds to wait for one Proxmox task."
  type        = number
  default     = 600
}

variable "lab" {
  description = "The lab's name (inventory metadata.name); every VM is tagged with it."
  type        = string
}

variable "template" {
  description = "Name of the cloud-init template; a template of this name exists on every target host."
  type        = string
}

variable "clone_wait" {
  description = "Seconds the provider sleeps after a clone."
  type        = number
  default     = 2
}

variable "additional_wait" {
  description = "Seconds the provider sleeps before starting a VM."
  type        = number
  default     = 2
}

# The template's hardware. The provider deletes every disk, NIC and serial
# port a clone does not declare, so main.tf declares all of them with these
# values, which must be the template's (provision template creates it so).
variable "hardware" {
  description = "The cloud-init template's hardware, declared again for every clone."
  type = object({
    scsihw            = string # disk controller
    bios              = string
    boot              = string # e.g. order=scsi0
    qemu_os           = string # ostype
    agent             = number # 1: the QEMU guest agent is enabled
    net_model         = string # net0's model
    serial0           = string # serial0's type, e.g. socket
    vga               = string # vga type, e.g. serial0
    cloudinit_storage = string # storage of the cloud-init drive on ide2
  })
}

variable "vms" {
  description = "The lab's VMs by name."
  type = map(object({
    vmid         = number
    target_node  = string
    role         = string # manager or worker
    cores        = number
    memory       = number # MiB
    disk_size    = string # e.g. 32G; never smaller than the template's disk
    disk_storage = string # the template disk's storage
    bridge       = string
    ipconfig0    = string # ip=<address>/<prefix>,gw=<gateway>
    nameserver   = string # space-separated
    cicustom     = string # user=<storage>:snippets/<file>,network=...,meta=...
    snippets_sha = string # sha256 of the three snippets: a change recreates the VM
    tags         = list(string)
  }))
}
