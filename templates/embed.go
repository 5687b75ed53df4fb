// Package templates holds the text templates provision renders, embedded in
// the binary. The files are meant to be read and edited by lab admins: see
// cloud-init/README.md.
//
// The embed lives here because go:embed cannot reach files above the
// package's directory.
package templates

import "embed"

// FS holds cloud-init/ (user-data, meta-data, network-config and the files
// they write on the node, under cloud-init/files/).
//
//go:embed cloud-init
var FS embed.FS
