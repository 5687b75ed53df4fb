package stages

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/fhlab/provision/images"
	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/rpi/image"
	"github.com/fhlab/provision/internal/swarm/selfjoin"
)

// PiImage builds the golden Raspberry Pi image of every image definition the
// racks name (cached by input hash), then writes each Pi's seed.
type PiImage struct {
	Renderer *render.Renderer
}

func (PiImage) Name() string  { return "pi-image" }
func (PiImage) Title() string { return "build the golden Raspberry Pi images and each Pi's seed" }
func (PiImage) Skip(env *pipeline.Env) (bool, string) {
	return skipWithout(env, inventory.KindPi, "the inventory has no pis.racks")
}

// NewImageBuilder is the image builder for env: definitions from
// images/rpi (embedded), images under <state-dir>/images, time stamps from
// $SOURCE_DATE_EPOCH when set.
func NewImageBuilder(env *pipeline.Env, r *render.Renderer) (*image.Builder, error) {
	defs, err := fs.Sub(images.FS, "rpi")
	if err != nil {
		return nil, err
	}
	b := &image.Builder{Inv: env.Inventory, Renderer: r, Defs: defs, Dir: filepath.Join(env.StateDir, "images"), Log: env.Log}
	if env.Status != nil {
		b.Progress = env.Status.Progress
	}
	if ep, err := selfjoin.FromInventory(env.Inventory, env.StateDir); err == nil {
		b.Join = ep.Seed // racks with join: self get a ticket in each seed
	}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if b.Epoch, err = strconv.ParseInt(s, 10, 64); err != nil || b.Epoch <= 0 {
			return nil, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970", s)
		}
	}
	return b, nil
}

func (s PiImage) Plan(ctx context.Context, env *pipeline.Env) (pipeline.Plan, error) {
	var p pipeline.Plan
	b, err := NewImageBuilder(env, s.Renderer)
	if err != nil {
		return p, err
	}
	names := image.RackImages(env.Inventory)
	if len(names) == 0 {
		p.Notes = append(p.Notes, "no rack names an image: set pis.image or pis.racks[].image (see images/rpi)")
		return p, nil
	}
	for _, name := range names {
		pl, err := b.Plan(name)
		if err != nil {
			return p, err
		}
		ch := pipeline.Change{Node: "image " + pl.Name, Action: pipeline.Create, Detail: "input " + pl.InputHash[:12]}
		switch {
		case pl.Reuse:
			ch.Action, ch.Detail = pipeline.Keep, pl.Prev.Image
		case pl.Prev != nil:
			ch.Action, ch.Detail = pipeline.Replace, pl.Reason+" → "+pl.InputHash[:12]
		}
		p.Changes = append(p.Changes, ch)
	}
	p.Notes = append(p.Notes, "images go to "+b.Dir+", seeds to "+filepath.Join(env.StateDir, "seeds"))
	return p, nil
}

func (s PiImage) Run(ctx context.Context, env *pipeline.Env) error {
	b, err := NewImageBuilder(env, s.Renderer)
	if err != nil {
		return err
	}
	names := image.RackImages(env.Inventory)
	if len(names) == 0 {
		return errors.New("no rack names an image: set pis.image or pis.racks[].image (see images/rpi)")
	}
	for _, name := range names {
		res, err := b.Build(ctx, name)
		if err != nil {
			return err
		}
		how := "built"
		if res.Cached {
			how = "unchanged"
		}
		fmt.Fprintf(env.Out, "image %s %s: %s (sha256 %s)\n", res.M.Name, how, res.Image, res.M.SHA256[:12])
	}
	sum, err := image.WriteSeeds(ctx, b, "", filepath.Join(env.StateDir, "seeds"))
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Out, "seeds: %d Pis, %d written, %d unchanged\n", sum.Nodes, sum.Written, sum.Unchanged)
	return nil
}
