# The provider is a pre-release: Terraform selects it only with an exact
# version constraint ("~>" and ">=" skip pre-releases).
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    proxmox = {
      source  = "telmate/proxmox"
      version = "3.0.2-rc07"
    }
  }
}
