// Package terraform holds provision's Terraform root module for the
// telmate/proxmox provider, embedded in the binary. The .tf files are meant
// to be read by lab admins; provision writes them, with the generated
// vms.auto.tfvars.json, into <state-dir>/terraform and runs Terraform there.
//
// The embed lives here because go:embed cannot reach files above the
// package's directory.
package terraform

import "embed"

// FS holds the module's *.tf files at its root.
//
//go:embed *.tf
var FS embed.FS
