# A module of terraform_data resources (builtin provider: no download) that
# exercises create, update, replace, destroy, a failing apply and a slow one.
variable "items" {
  type = map(object({
    input   = string # changing it updates in place
    trigger = string # changing it replaces
  }))
}

variable "fail_message" {
  type    = string
  default = ""
}

variable "sleep_seconds" {
  type    = number
  default = 0
}

resource "terraform_data" "item" {
  for_each         = var.items
  input            = each.value.input
  triggers_replace = [each.value.trigger]
}

resource "terraform_data" "failing" {
  count = var.fail_message == "" ? 0 : 1
  input = var.fail_message

  provisioner "local-exec" {
    command = "echo \"$MSG (secret: $PROVISION_TEST_SECRET, checkpoint disabled: $CHECKPOINT_DISABLE)\" >&2; exit 1"
    environment = {
      MSG = var.fail_message
    }
  }
}

resource "terraform_data" "slow" {
  count = var.sleep_seconds > 0 ? 1 : 0

  provisioner "local-exec" {
    command = "echo slow-started; exec sleep ${var.sleep_seconds}"
  }
}

output "items" {
  value = { for k, v in terraform_data.item : k => v.output }
}

output "env_seen" {
  value     = "fixed"
  sensitive = true
}

variable "show_cli_config" {
  type    = bool
  default = false
}

# Reports, from terraform's own working directory, which CLI configuration
# and CA files terraform was given and whether they can be opened from there.
resource "terraform_data" "cli_config" {
  count = var.show_cli_config ? 1 : 0

  provisioner "local-exec" {
    command = "for v in TF_CLI_CONFIG_FILE SSL_CERT_FILE; do eval f=\\$$v; if test -f \"$f\"; then e=yes; else e=no; fi; echo \"$v=$f exists=$e\"; done"
  }
}
