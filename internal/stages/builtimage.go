package stages

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fhlab/provision/images"
	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/rpi/image"
)

// ErrChooseImage is returned by BuiltImage when the racks do not name
// exactly one image: the user has to pass one.
var ErrChooseImage = errors.New("pass --image IMG")

// BuiltImage is the golden image the given racks boot (a rack's image:,
// else pis.image), as `provision image build` left it in
// <stateDir>/images/<name>/. what names the command in errors.
func BuiltImage(what string, inv *inventory.Inventory, stateDir string, racks []string) (*image.Result, error) {
	var names []string
	byImage := map[string][]string{}
	for _, rack := range racks {
		name := inv.RackImage(rack)
		if name == "" {
			return nil, fmt.Errorf("%s: rack %s names no image (pis.image or the rack's image: in %s): %w", what, rack, inv.File, ErrChooseImage)
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
		return nil, fmt.Errorf("%s: the racks boot %d images: %s; take one image's racks at a time or %w", what, len(names), strings.Join(which, ", "), ErrChooseImage)
	}
	defs, err := fs.Sub(images.FS, "rpi")
	if err != nil {
		return nil, err
	}
	b := &image.Builder{Inv: inv, Defs: defs, Dir: filepath.Join(stateDir, "images")}
	built, err := b.Built(names[0])
	if err != nil {
		return nil, fmt.Errorf("%s: the golden image of rack %s: %w", what, strings.Join(byImage[names[0]], ", "), err)
	}
	return built, nil
}

// RacksOf are the racks of nodes, in order of first appearance.
func RacksOf(nodes []*inventory.Node) []string {
	var racks []string
	for _, n := range nodes {
		if !slices.Contains(racks, n.Rack) {
			racks = append(racks, n.Rack)
		}
	}
	return racks
}
