package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/rpi/flash"
	"github.com/fhlab/provision/internal/rpi/image"
)

type flashFlags struct {
	image, bmap       string
	noBmap, recheck   bool
	devices, nodes    []string
	rack, seeds       string
	toFile            string
	watch, yes        bool
	allowNonRemovable bool
	output            string
	forceBars         bool                     // tests: draw the bars into a buffer
	watchFilter       func(*flash.Device) bool // tests: only their own loop devices
}

const flashLong = `Write the golden image to SD cards, many at once, each at its own speed,
and prove each card holds it.

The image is --image IMG, or, with -i FILE --rack R (or --node), the golden
image the rack names (its image:, else pis.image) as ` + "`provision image build`" + `
left it in <state-dir>/images/<name>/.

Only the blocks the image's block map (IMG.bmap, bmaptool format 2.0) lists
are written, with large aligned O_DIRECT writes. The card's first MiB is
zeroed first and the image's first MiB (MBR, partition table) written last,
so a card whose write stops early has no partition table and cannot boot.
Every written range is read back from the card with O_DIRECT (bypassing the
page cache) and its sha256 compared with the block map's: each range as soon
as all of it is on the card, while the later ones are still being written.
Then the node's seed (<seeds>/<node>/: user-data, meta-data, network-config)
is written into the card's FAT boot partition, without mounting it, and read
back. A card is reported done only when all of that verified. A card that
fails, or is stopped with Ctrl-C, is left without a partition table.

The image is checked against its block map before any card is touched. An
image without a block map is refused unless --no-bmap (the data is then found
from the image file's holes and hashed here). A check that passed is stamped
in ~/.cache/provision/flash-checked: while the image file and its map are
unchanged (same inode, size, mtime, ctime and map bytes) the next run does
not read the image against the map again (--recheck does); every card is
still read back against the map.

Safety: refused are the disk holding /, a disk with a mounted partition, one
used as swap or held by LVM, device-mapper or RAID, a partition instead of a
whole disk, a device smaller than the image, a regular file (unless
--to-file), and non-removable disks unless --allow-non-removable (loop
devices count as non-removable). Devices are opened with O_EXCL. Before
writing, each device's model, size, serial and partitions are shown and you
are asked; --yes answers only together with the exact --device list.

--watch walks a rack's nodes in slot order: it asks for each next card and
waits for a new disk to appear (polling /sys/block), flashes it in the
background and asks for the next. A card pulled mid-write fails alone; the
walk goes on.`

func (a *app) flashCommand() *cobra.Command {
	var f flashFlags
	cmd := &cobra.Command{
		Use:   "flash [--image IMG] (--device DEV[,DEV...] | --to-file DIR | --watch) [--rack R | --node NAME ...]",
		Short: "Write the golden image and each node's seed to SD cards, verified from the card",
		Long:  flashLong,
		Example: `  provision flash --image golden.img --device /dev/sdb,/dev/sdc
  provision flash -i lab.yaml --rack r1 --image golden.img --device /dev/sdb,/dev/sdc --node pi-r1-01 --node pi-r1-02
  provision flash -i lab.yaml --rack r1 --watch      # the image pis.image names, as built
  provision flash -i lab.yaml --rack r1 --image golden.img --to-file out/cards`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runFlash(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.image, "image", "", "the golden image (raw; its block map is IMG.bmap); default with -i: the one the rack names, from <state-dir>/images")
	fl.StringVar(&f.bmap, "bmap", "", "the image's block map (default IMG.bmap)")
	fl.BoolVar(&f.noBmap, "no-bmap", false, "no block map: find the image's data from its holes (SEEK_DATA/SEEK_HOLE)")
	fl.BoolVar(&f.recheck, "recheck", false, "read the image against its block map even if an earlier run checked it and it has not changed")
	fl.StringSliceVar(&f.devices, "device", nil, "whole-disk devices to write, comma separated, in the order of the nodes")
	fl.StringArrayVar(&f.nodes, "node", nil, "node whose seed goes on the card (repeat, one per device)")
	fl.StringVar(&f.rack, "rack", "", "the rack's nodes in slot order (needs -i)")
	fl.StringVar(&f.seeds, "seeds", "", "seed directory holding <node>/ (default <state-dir>/seeds)")
	fl.StringVar(&f.toFile, "to-file", "", "write one ready image per node into DIR instead of cards")
	fl.BoolVar(&f.watch, "watch", false, "wait for each card of the rack to be inserted, in slot order")
	fl.BoolVar(&f.yes, "yes", false, "do not ask (only with --device)")
	fl.BoolVar(&f.allowNonRemovable, "allow-non-removable", false, "also write disks the kernel does not call removable (and loop devices)")
	fl.StringVarP(&f.output, "output", "o", "text", "text or json")
	return cmd
}

func usage(format string, args ...any) error {
	return exitError{2, fmt.Errorf(format, args...)}
}

// flashPlan is what a flash run will do, settled before anything is written.
type flashPlan struct {
	image   *flash.Image
	cards   []flash.Card
	devices []*flash.Device
}

func (a *app) runFlash(ctx context.Context, f flashFlags) error {
	modes := 0
	for _, on := range []bool{len(f.devices) > 0, f.toFile != "", f.watch} {
		if on {
			modes++
		}
	}
	switch {
	case modes != 1:
		return usage("flash: pass exactly one of --device DEV[,DEV...], --to-file DIR or --watch")
	case f.yes && len(f.devices) == 0:
		return usage("flash: --yes is accepted only with --device naming the exact devices")
	case f.watch && f.rack == "":
		return usage("flash: --watch walks a rack: pass -i FILE --rack NAME")
	case f.output != "text" && f.output != "json":
		return usage("flash: --output %q: use text or json", f.output)
	case f.bmap != "" && f.noBmap:
		return usage("flash: --bmap and --no-bmap exclude each other")
	}
	nodes, seeds, inv, err := a.flashNodes(f)
	if err != nil {
		return err
	}
	if f.image == "" {
		if f.image, err = a.flashImage(inv, nodes, f.output == "text"); err != nil {
			return err
		}
	}
	if f.toFile != "" && len(nodes) == 0 {
		return usage("flash: --to-file writes one image per node: name them with --rack or --node")
	}
	if len(f.devices) > 0 && len(nodes) > 0 && len(nodes) != len(f.devices) {
		return usage("flash: %d devices but %d nodes (%s): name one node per device with --node", len(f.devices), len(nodes), strings.Join(nodes, ", "))
	}
	// Every seed before any card: a missing one changes nothing.
	var overlays []*flash.Overlay
	var missing []string
	for _, n := range nodes {
		ov, err := flash.LoadOverlay(seeds, n)
		if err != nil {
			missing = append(missing, err.Error())
			continue
		}
		overlays = append(overlays, ov)
	}
	if len(missing) > 0 {
		what, has := "the nodes", "have"
		if f.rack != "" {
			what, has = "rack "+f.rack, "has"
		}
		if len(missing) == len(nodes) {
			return fmt.Errorf("flash: %s %s no seeds in %s (write them first: provision image seed -i FILE); nothing was written\n  %s", what, has, seeds, missing[0])
		}
		return fmt.Errorf("flash: %s: %d of %d nodes have no seed; nothing was written:\n  %s", what, len(missing), len(nodes), strings.Join(missing, "\n  "))
	}

	o := flash.OpenOptions{Bmap: f.bmap, NoBmap: f.noBmap}
	if cache, err := os.UserCacheDir(); err == nil && !f.recheck {
		o.Checked = filepath.Join(cache, "provision", "flash-checked")
	}
	if f.output == "text" {
		fmt.Fprintf(a.streams.Err, "checking %s against its block map...\n", f.image)
	}
	im, err := flash.Open(ctx, f.image, o)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("flash stopped while checking %s against its block map; nothing was written: %w", f.image, err)
		}
		return err
	}
	if !im.CheckedAt.IsZero() && f.output == "text" {
		fmt.Fprintf(a.streams.Err, "  unchanged since it matched its block map at %s (--recheck reads it again)\n", im.CheckedAt.Local().Format(time.DateTime))
	}
	plan := flashPlan{image: im}
	sys := flash.DefaultSystem()
	opt := flash.CheckOptions{AllowNonRemovable: f.allowNonRemovable}
	switch {
	case f.toFile != "":
		if err := os.MkdirAll(f.toFile, 0o755); err != nil {
			return fmt.Errorf("flash: %w", err)
		}
		for _, ov := range overlays {
			plan.cards = append(plan.cards, flash.Card{Name: ov.Node, Target: flash.ImageFileName(f.toFile, ov.Node), ToFile: true, Overlay: ov})
		}
	case len(f.devices) > 0:
		var problems []string
		seen := map[string]string{}
		for i, path := range f.devices {
			d, err := sys.Inspect(path)
			if err == nil {
				if prev, dup := seen[d.Dev]; dup {
					err = fmt.Errorf("device %s is %s again", path, prev)
				} else {
					seen[d.Dev] = path
					err = sys.Check(d, im.Size, opt)
				}
			}
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			c := flash.Card{Name: d.Name, Target: path}
			if len(overlays) > 0 {
				c.Name, c.Overlay = overlays[i].Node, overlays[i]
			}
			plan.cards = append(plan.cards, c)
			plan.devices = append(plan.devices, d)
		}
		if len(problems) > 0 {
			return fmt.Errorf("flash: refused, nothing was written:\n  %s", strings.Join(problems, "\n  "))
		}
		a.printDevices(plan)
		if !f.yes {
			if err := a.confirm(fmt.Sprintf("Write %s to these %s, destroying what is on them?", filepath.Base(im.Path), plural(len(plan.cards), "device"))); err != nil {
				return err
			}
		}
	case f.watch:
		for _, ov := range overlays {
			plan.cards = append(plan.cards, flash.Card{Name: ov.Node, Overlay: ov})
		}
		fmt.Fprintf(a.streams.Err, "Rack %s: %s in slot order (%s). Each new removable disk that appears will be written with %s.\n",
			f.rack, plural(len(nodes), "card"), strings.Join(nodes, ", "), filepath.Base(im.Path))
		if err := a.confirm("Start?"); err != nil {
			return err
		}
	}
	return a.flashCards(ctx, f, plan, sys, opt)
}

// flashNodes are the nodes whose cards are written, in order, and where
// their seeds are.
func (a *app) flashNodes(f flashFlags) (nodes []string, seeds string, inv *inventory.Inventory, err error) {
	seeds = f.seeds
	if f.rack == "" && len(f.nodes) == 0 {
		return nil, seeds, nil, nil
	}
	if f.rack != "" || a.settings.Inventory != "" {
		if inv, err = a.loadInventory(); err != nil {
			return nil, "", nil, err
		}
		if seeds == "" {
			seeds = filepath.Join(a.stateDir(inv), "seeds")
		}
	}
	if seeds == "" {
		return nil, "", nil, usage("flash: --node needs the seeds: pass --seeds DIR or -i FILE")
	}
	if inv == nil {
		return f.nodes, seeds, inv, nil
	}
	var pis []inventory.Node
	for _, n := range inv.Nodes {
		if n.Kind == inventory.KindPi && (f.rack == "" || n.Rack == f.rack) {
			pis = append(pis, n)
		}
	}
	if f.rack != "" && len(pis) == 0 {
		var racks []string
		for _, r := range inv.Lab.Pis.Racks {
			racks = append(racks, r.Name)
		}
		return nil, "", nil, usage("flash: %s has no rack %q (racks: %s)", inv.File, f.rack, strings.Join(racks, ", "))
	}
	slices.SortStableFunc(pis, func(x, y inventory.Node) int { return x.Slot - y.Slot })
	if len(f.nodes) == 0 {
		for _, n := range pis {
			nodes = append(nodes, n.Name)
		}
		return nodes, seeds, inv, nil
	}
	for _, name := range f.nodes {
		if !slices.ContainsFunc(pis, func(n inventory.Node) bool { return n.Name == name }) {
			where := "a Pi of " + inv.File
			if f.rack != "" {
				where = "in rack " + f.rack
			}
			return nil, "", nil, usage("flash: --node %s is not %s", name, where)
		}
	}
	return f.nodes, seeds, inv, nil
}

// flashImage is the golden image the nodes' racks boot, as built.
func (a *app) flashImage(inv *inventory.Inventory, nodes []string, say bool) (string, error) {
	if inv == nil {
		return "", usage("flash: --image IMG is required without -i FILE --rack R or --node NAME (with them, the racks' golden image is used)")
	}
	var ns []*inventory.Node
	for i := range inv.Nodes {
		if slices.Contains(nodes, inv.Nodes[i].Name) {
			ns = append(ns, &inv.Nodes[i])
		}
	}
	built, err := a.builtImage("flash", inv, racksOf(ns))
	if err != nil {
		return "", fmt.Errorf("%w; nothing was written", err)
	}
	if say {
		fmt.Fprintf(a.streams.Err, "image: %s (%s, built from input %s)\n", built.Image, built.M.Name, shortHash(built.M.InputHash))
	}
	return built.Image, nil
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func (a *app) printDevices(plan flashPlan) {
	tw := tabwriter.NewWriter(a.streams.Err, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tFOR\tMODEL\tSIZE\tSERIAL\tPARTITIONS NOW")
	for i, d := range plan.devices {
		var parts []string
		for _, p := range d.Partitions {
			parts = append(parts, fmt.Sprintf("%s %s", p.Name, image.HumanBytes(p.Size)))
		}
		if len(parts) == 0 {
			parts = []string{"none"}
		}
		serial := d.Serial
		if serial == "" {
			serial = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Path, plan.cards[i].Name, d.Model, image.HumanBytes(d.Size), serial, strings.Join(parts, ", "))
	}
	tw.Flush()
	m := plan.image.Map
	fmt.Fprintf(a.streams.Err, "Image %s: %s, %s mapped.\n", plan.image.Path, image.HumanBytes(plan.image.Size), image.HumanBytes(m.MappedBytes()))
}

// confirm asks on the error stream and reads "yes" from the input.
func (a *app) confirm(question string) error {
	fmt.Fprintf(a.streams.Err, "%s Type yes to continue: ", question)
	line, err := bufio.NewReader(a.streams.In).ReadString('\n')
	if strings.TrimSpace(line) == "yes" {
		return nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("flash: read answer: %w", err)
	}
	fmt.Fprintln(a.streams.Err)
	return exitError{1, errors.New("flash: not confirmed; nothing was written (--yes answers for you with --device)")}
}

func (a *app) flashCards(ctx context.Context, f flashFlags, plan flashPlan, sys flash.System, opt flash.CheckOptions) error {
	names := make([]string, len(plan.cards))
	for i, c := range plan.cards {
		names[i] = c.Name
	}
	var ui flashUI
	if (isTerminal(a.streams.Err) || f.forceBars) && f.output == "text" {
		ui = newBarUI(a.streams.Err, names, plan.image.Map.MappedBytes(), f.forceBars)
	} else {
		ui = newLineUI(a.streams.Err)
	}
	fl := &flash.Flasher{Image: plan.image, Progress: ui.event}
	start := time.Now()
	var res []flash.Result
	if f.watch {
		w := &flash.Watcher{Sys: sys, Filter: f.watchFilter, Refused: func(d *flash.Device, err error) {
			ui.say("new disk %s not used: %v", d.Path, err)
		}}
		res = fl.Walk(ctx, w, plan.cards, func(c flash.Card) {
			ui.say("insert the card for %s", c.Name)
		}, func(d *flash.Device) error {
			if err := sys.Check(d, plan.image.Size, opt); err != nil {
				return err
			}
			ui.say("%s: %s, %s, serial %s", d.Path, d.Model, image.HumanBytes(d.Size), d.Serial)
			return nil
		})
	} else {
		res = fl.FlashAll(ctx, plan.cards)
	}
	ui.wait()
	failed := 0
	for _, r := range res {
		if !r.OK {
			failed++
		}
	}
	if f.output == "json" {
		enc := json.NewEncoder(a.streams.Out)
		enc.SetIndent("", "  ")
		enc.Encode(struct {
			Image   string         `json:"image"`
			Size    int64          `json:"size"`
			Mapped  int64          `json:"mapped"`
			Seconds float64        `json:"seconds"`
			Cards   []flash.Result `json:"cards"`
		}{plan.image.Path, plan.image.Size, plan.image.Map.MappedBytes(), time.Since(start).Seconds(), res})
	} else {
		a.printFlashResults(res, time.Since(start))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("flash stopped: %s not done, each left without a partition table: %w", plural(failed, "card"), err)
	}
	if failed > 0 {
		return fmt.Errorf("flash: %d of %d cards failed (see above)", failed, len(res))
	}
	return nil
}

func (a *app) printFlashResults(res []flash.Result, took time.Duration) {
	tw := tabwriter.NewWriter(a.streams.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CARD\tTARGET\tRESULT")
	var bytes int64
	for _, r := range res {
		target := r.Target
		if target == "" {
			target = "-"
		}
		if r.OK {
			seed := "no seed"
			if len(r.Overlay) > 0 {
				seed = fmt.Sprintf("seed (%s) verified", strings.Join(r.Overlay, " "))
			}
			fmt.Fprintf(tw, "%s\t%s\tdone: %s written and read back, %s, %s\n", r.Card, target, image.HumanBytes(r.Written), seed, r.Duration.Round(100*time.Millisecond))
			bytes += r.Written
			continue
		}
		msg := "FAILED: " + r.Error
		if r.Note != "" {
			msg += "; " + r.Note
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Card, target, msg)
	}
	tw.Flush()
	if took > 0 && bytes > 0 {
		fmt.Fprintf(a.streams.Out, "%s written and verified in %s (%.1f MB/s over all cards)\n", image.HumanBytes(bytes), took.Round(100*time.Millisecond), float64(bytes)/took.Seconds()/1e6)
	}
}
