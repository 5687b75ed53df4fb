package cli

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fhlab/provision/images"
	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/rpi/image"
)

// builtImage is the golden image the given racks boot (a rack's image:,
// else pis.image), as `provision image build` left it in
// <state-dir>/images/<name>/. what names the command in errors.
func (a *app) builtImage(what string, inv *inventory.Inventory, racks []string) (*image.Result, error) {
	var names []string
	byImage := map[string][]string{}
	for _, rack := range racks {
		name := inv.RackImage(rack)
		if name == "" {
			return nil, usage("%s: rack %s names no image (pis.image or the rack's image: in %s): pass --image IMG", what, rack, inv.File)
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
		if !slices.Contains(byImage[name], rack) {
			byImage[name] = append(byImage[name], rack)
		}
	}
	if len(names) != 1 {
		var which []string
		for _, n := range names {
			which = append(which, fmt.Sprintf("%s (racks %s)", n, strings.Join(byImage[n], ", ")))
		}
		return nil, usage("%s: the racks boot %d images: %s; take one image's racks at a time or pass --image IMG", what, len(names), strings.Join(which, ", "))
	}
	defs, err := fs.Sub(images.FS, "rpi")
	if err != nil {
		return nil, err
	}
	b := &image.Builder{Inv: inv, Defs: defs, Dir: filepath.Join(a.stateDir(inv), "images")}
	built, err := b.Built(names[0])
	if err != nil {
		return nil, fmt.Errorf("%s: the golden image of rack %s: %w", what, strings.Join(byImage[names[0]], ", "), err)
	}
	return built, nil
}

// racksOf are the racks of nodes, in order of first appearance.
func racksOf(nodes []*inventory.Node) []string {
	var racks []string
	for _, n := range nodes {
		if !slices.Contains(racks, n.Rack) {
			racks = append(racks, n.Rack)
		}
	}
	return racks
}
