# Credentials never appear here or in any file provision writes: the
# provider reads the API token from $PM_API_TOKEN_ID and $PM_API_TOKEN_SECRET,
# which provision sets for Terraform from the variables the inventory names
# (proxmox.tokenIDEnv / proxmox.tokenSecretEnv).
provider "proxmox" {
  pm_api_url      = var.pm_api_url
  pm_tls_insecure = var.pm_tls_insecure
  # The provider's default (1) creates one VM at a time; each slot is held
  # for a whole create, waits included.
  pm_parallel = var.pm_parallel
  pm_timeout  = var.pm_timeout
}
