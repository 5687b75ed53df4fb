package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/rpi/image"
	"github.com/fhlab/provision/internal/stages"
)

const imageLong = `Build the lab's Raspberry Pi golden images and give each Pi its identity,
without mount, loop device or root-only kernel modules.

An image definition (images/rpi/<name>.yaml, built into provision; or a path
to a .yaml file) names its source, boot files and overlays:

  debian:  Debian's arm64 packages (mmdebstrap under qemu-user), assembled
           into an MBR image: FAT32 firmware partition written in user space
           (go-diskfs), ext4 root made with mke2fs -d.
  base:    a Raspberry Pi OS (Bookworm, Trixie), Ubuntu Server or Debian raspi
           image, raw or .xz, checked against its sha256, recognised from the
           image itself and customised on a copy (ext4 through debugfs).

Both bake in the inventory's host tuning (the same files user-data writes:
link policy, sysctls, IPVS timer, daemon.json, dockerd limits, zram, memory
cgroup), the ssh.user with its keys and sudo, an empty machine-id and no
docker engine identity (each Pi makes its own), cloud-init pinned to
NoCloud, radios off (dtoverlay=disable-wifi/-bt) unless the definition
keeps them. A rack's image is pis.racks[].image, else pis.image.

  build    <state-dir>/images/<name>/<name>.img with .bmap (bmaptool copy),
           .sha256 and .manifest.json (packages from the image's dpkg
           database, tuning, input hash). The inputs are hashed; with the
           same inputs the image is reused. SOURCE_DATE_EPOCH sets the time
           stamped into the image (default 2026-01-01): the same inputs give
           the same bytes.
  seed     <state-dir>/seeds/<node>/: the files that make one card (or netboot
           client) that node: user-data, meta-data, network-config and
           cmdline.txt (ds=nocloud;s=file:///boot/firmware/;i=<instance-id>,
           memory cgroup on), or firstrun.sh on Bookworm; manifest.json says
           which partition they go to. A few KiB per Pi instead of an image copy.
  inspect  say what an image file is (flavour, partitions, seed format)
  diff     say where two images differ, down to files and inode fields
           (two builds of the same inputs should be identical)`

const imageExample = `  provision image build -i inventory/example.yaml                # every image the racks name
  provision image build -i lab.yaml --image raspios-trixie
  provision image build -i lab.yaml --image ./my-image.yaml         # a definition outside images/rpi
  SOURCE_DATE_EPOCH=1767225600 provision image build -i lab.yaml    # reproducible time stamps
  provision image seed -i lab.yaml --rack r1
  provision image inspect 2025-11-24-raspios-trixie-arm64-lite.img.xz
  provision image diff build1/debian-pi4.img build2/debian-pi4.img
  bmaptool copy .provision/fh-lab/images/debian-pi4/debian-pi4.img /dev/sdX`

func (a *app) imageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "image build|seed|inspect|diff",
		Short:   "Build Raspberry Pi golden images and per-Pi seeds (no mount, no loop device)",
		Long:    imageLong,
		Example: imageExample,
	}
	cmd.AddCommand(a.imageBuildCommand(), a.imageSeedCommand(), a.imageInspectCommand(), a.imageDiffCommand())
	return cmd
}

// imageBuilder loads the inventory and makes the image builder.
func (a *app) imageBuilder() (*image.Builder, error) {
	inv, err := a.loadInventory()
	if err != nil {
		return nil, err
	}
	env, err := a.env(inv, "")
	if err != nil {
		return nil, err
	}
	d, err := a.deps()
	if err != nil {
		return nil, err
	}
	d.SSH.Close()
	return stages.NewImageBuilder(env, d.Renderer)
}

func (a *app) imageBuildCommand() *cobra.Command {
	var (
		names []string
		plan  bool
	)
	cmd := &cobra.Command{
		Use:   "build -i FILE [--image NAME]...",
		Short: "Build (or reuse) the golden image of each definition",
		Long: `Build the golden image of each definition the racks name (or --image), or
reuse the last one when the input hash is the same. Prints where the image,
block map, sha256 and manifest are.`,
		Example: `  provision image build -i lab.yaml --plan    # which images would be built, and why
  provision image build -i lab.yaml
  provision image build -i lab.yaml --image debian-pi4`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := a.imageBuilder()
			if err != nil {
				return err
			}
			if len(names) == 0 {
				names = image.RackImages(b.Inv)
			}
			if len(names) == 0 {
				return exitError{2, fmt.Errorf("no image to build: the racks name none (pis.image, pis.racks[].image); pass --image NAME (known: %s)", strings.Join(image.Names(b.Defs), ", "))}
			}
			if plan {
				return a.planImages(b, names)
			}
			return a.buildImages(cmd.Context(), b, names)
		},
	}
	cmd.Flags().StringSliceVar(&names, "image", nil, "definition name (images/rpi/NAME.yaml) or path; repeatable (default: the racks' images)")
	cmd.Flags().BoolVar(&plan, "plan", false, "only say which images would be built and which reused (and why); change nothing")
	return cmd
}

// planImages prints, per image, whether build would reuse it or build it.
func (a *app) planImages(b *image.Builder, names []string) error {
	tw := tabwriter.NewWriter(a.streams.Out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tACTION\tINPUT\tWHY")
	for _, name := range names {
		p, err := b.Plan(name)
		if err != nil {
			return err
		}
		action := "build"
		if p.Reuse {
			action = "reuse"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.16s\t%s\n", p.Name, action, p.InputHash, p.Reason)
	}
	return tw.Flush()
}

func (a *app) buildImages(ctx context.Context, b *image.Builder, names []string) error {
	for _, name := range names {
		start := time.Now()
		res, err := b.Build(ctx, name)
		if err != nil {
			return err
		}
		how := "built in " + time.Since(start).Round(100*time.Millisecond).String()
		if res.Cached {
			how = "unchanged (same input hash), " + time.Since(start).Round(time.Millisecond).String()
		}
		m := res.M
		fmt.Fprintf(a.streams.Out, "image %s: %s\n", m.Name, how)
		tw := tabwriter.NewWriter(a.streams.Out, 2, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "  image\t%s\t%s, %s mapped\n", res.Image, image.HumanBytes(m.ImageSize), image.HumanBytes(m.MappedBlocks*4096))
		fmt.Fprintf(tw, "  block map\t%s\tbmaptool copy %s /dev/sdX\n", res.Bmap, res.Image)
		fmt.Fprintf(tw, "  sha256\t%s\t%s\n", res.SHA256, m.SHA256)
		fmt.Fprintf(tw, "  manifest\t%s\t%d packages, input %s\n", res.Manifest, len(m.Packages), m.InputHash[:16])
		fmt.Fprintf(tw, "  layout\t%s, seed %s\tdisk %s, boot %q, root %q\n", m.Layout.Flavour, m.Layout.Seed, m.Layout.DiskID, m.Layout.Boot.Label, m.Layout.Root.Label)
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func (a *app) imageSeedCommand() *cobra.Command {
	var rack, outDir string
	cmd := &cobra.Command{
		Use:   "seed -i FILE [--rack NAME] [-o DIR]",
		Short: "Write each Pi's seed: the few files that make a card that Pi",
		Long: `Write each Pi's seed into DIR/<node>/ (default <state-dir>/seeds): the files
its image reads at first boot, in the names and places that image's flavour
reads them, and manifest.json naming the boot partition and paths. Flashing
writes the image, then these files; netboot serves them. The rack's image
must be built (provision image build). Files are replaced only when their
content changes.

The Pis of a rack with join: self also get a single-use join ticket (bound
to the node's name and address, valid for pis.joinServer.ticketTTL), the
join endpoint's URL and the lab CA (<state-dir>/join), and the
provision-self-join script that joins the swarm at first boot; such seeds
are written 0600. A ticket that is unused and has more than half its
lifetime left is kept; otherwise the node gets a new one.`,
		Example: `  provision image seed -i lab.yaml
  provision image seed -i lab.yaml --rack r1 -o /srv/seeds`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := a.imageBuilder()
			if err != nil {
				return err
			}
			if outDir == "" {
				outDir = filepath.Join(filepath.Dir(b.Dir), "seeds")
			}
			start := time.Now()
			sum, err := image.WriteSeeds(cmd.Context(), b, rack, outDir)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.streams.Out, "seeds: %d Pis, %d written, %d unchanged, in %s (%s)\n", sum.Nodes, sum.Written, sum.Unchanged, outDir, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVar(&rack, "rack", "", "only this rack's Pis")
	cmd.Flags().StringVarP(&outDir, "output-dir", "o", "", "where to write (default <state-dir>/seeds)")
	return cmd
}

func (a *app) imageInspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "Say what a Raspberry Pi image file is: flavour, partitions, seed format",
		Long: `Read an image file (raw or .xz) without mounting it or changing it and say
which flavour it is, how its partitions are laid out and labelled, and how
its Pis would get their identity. A file that is not a Pi image is named
as such, with the reason.`,
		Example: `  provision image inspect 2025-11-24-raspios-trixie-arm64-lite.img.xz`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := image.Inspect(cmd.Context(), args[0], os.TempDir())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.streams.Out, "%s: %s (%s %s), seed: %s, cloud-init: %v\n", args[0], l.Flavour, l.OSRelease["ID"], l.OSRelease["VERSION_CODENAME"], l.Seed, l.CloudInit)
			fmt.Fprintf(a.streams.Out, "  disk identifier %s\n", l.DiskID)
			for _, p := range []image.Partition{l.Boot, l.Root} {
				fmt.Fprintf(a.streams.Out, "  partition %d: type %02x, %s at %s, label %q\n", p.Number, p.Type, image.HumanBytes(p.Size), image.HumanBytes(p.Start), p.Label)
			}
			fmt.Fprintf(a.streams.Out, "  cmdline.txt: %s\n", l.Cmdline)
			return nil
		},
	}
}

func (a *app) imageDiffCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "diff IMAGE-A IMAGE-B",
		Short: "Say where two images differ: partition, files, inode fields, metadata",
		Long: `Compare two raw image files block by block, without mounting or changing
them, and explain each difference with the partition table of IMAGE-A: in
an ext4 partition, the files whose data differs (debugfs icheck and ncheck),
the inodes that differ with the fields that do (times, size, checksum...),
and the metadata (superblock, bitmaps, descriptors); in a FAT32 partition,
the files whose data differs. Use it to check that two builds of the same
inputs are byte for byte the same, and to see why when they are not.

Exit status: 0 identical, 1 different, 2 trouble.`,
		Example: `  provision image diff out/a/images/debian-pi4/debian-pi4.img out/b/images/debian-pi4/debian-pi4.img`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.ExactArgs(2)(cmd, args); err != nil {
				return exitError{2, err} // 1 means "different"
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := image.Diff(cmd.Context(), args[0], args[1])
			if err != nil {
				return exitError{2, err}
			}
			printDiff(a.streams.Out, r)
			if !r.Identical() {
				return exitError{1, fmt.Errorf("%s and %s differ", args[0], args[1])}
			}
			return nil
		},
	}
}

// printDiff writes a diff report, the largest differences first, at most
// maxListed names per list.
func printDiff(w io.Writer, r *image.DiffReport) {
	const maxListed = 25
	if r.Identical() {
		fmt.Fprintf(w, "identical: %s and %s (%s)\n", r.A, r.B, image.HumanBytes(r.SizeA))
		return
	}
	fmt.Fprintf(w, "%s and %s differ", r.A, r.B)
	if r.SizeA != r.SizeB {
		fmt.Fprintf(w, " in size (%d and %d bytes) and", r.SizeA, r.SizeB)
	}
	fmt.Fprintf(w, " in %d blocks of 4 KiB\n", r.Blocks)
	sorted := func(m map[string]int64) []string {
		keys := slices.Collect(maps.Keys(m))
		slices.SortFunc(keys, func(x, y string) int { return cmp.Or(cmp.Compare(m[y], m[x]), cmp.Compare(x, y)) })
		return keys
	}
	list := func(title string, keys []string, item func(string) string) {
		if len(keys) == 0 {
			return
		}
		fmt.Fprintf(w, "    %s (%d):\n", title, len(keys))
		for i, k := range keys {
			if i == maxListed {
				fmt.Fprintf(w, "      ... and %d more\n", len(keys)-maxListed)
				break
			}
			fmt.Fprintf(w, "      %s\n", item(k))
		}
	}
	for _, ar := range r.Areas {
		fmt.Fprintf(w, "  %s: %d blocks, the first at byte %d\n", ar.Name, ar.Blocks, ar.First)
		list("file data", sorted(ar.Files), func(k string) string { return fmt.Sprintf("%s  %s", k, image.HumanBytes(ar.Files[k])) })
		inodes := slices.Sorted(maps.Keys(ar.Inodes))
		list("inodes", inodes, func(k string) string { return fmt.Sprintf("%s  %s", k, strings.Join(ar.Inodes[k], ", ")) })
		list("metadata", sorted(ar.Meta), func(k string) string { return fmt.Sprintf("%s  %s", k, image.HumanBytes(ar.Meta[k])) })
	}
}
