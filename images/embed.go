// Package images holds the Raspberry Pi image definitions (rpi/), embedded
// in the binary like the cloud-init templates. See rpi/README.md.
package images

import "embed"

// FS holds rpi/: the definitions, their boot files and overlays.
//
//go:embed rpi
var FS embed.FS
