// Package image builds the lab's Raspberry Pi golden images and their
// per-node seeds, without mount, loop device or vfat module:
//
//   - from Debian's packages: the root tree from internal/rpi/rootfs, then
//     Assemble writes an MBR image (FAT32 with go-diskfs, ext4 with mke2fs -d);
//   - from a base image (Raspberry Pi OS Bookworm or Trixie, Ubuntu Server,
//     Debian raspi; raw or .xz): recognised from the image itself and
//     customised on a copy (ext4 through debugfs, FAT through go-diskfs).
//
// Both bake in the lab's host tuning (the files user-data writes, from
// render.HostFiles), the SSH user and keys, an empty machine-id and no
// docker engine identity. Outputs sit side by side: the image, its block
// map for bmaptool, its sha256 and a manifest (packages, tuning, input
// hash). Inputs are hashed; a build with the same inputs reuses the image.
package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/rpi/rootfs"
)

// BuilderVersion is part of every input hash: a change to how images are
// made changes it, so cached images are rebuilt.
const BuilderVersion = "provision-pi-image/3"

// DefaultEpoch is the time stamped on what provision writes into an image
// when SOURCE_DATE_EPOCH is not set: 2026-01-01T00:00:00Z.
const DefaultEpoch = 1767225600

// Builder builds the images of one lab.
type Builder struct {
	Inv      *inventory.Inventory
	Renderer *render.Renderer
	// Defs holds the definitions by name (images/rpi, embedded).
	Defs fs.FS
	// Dir is where images are kept: Dir/<name>/<name>.img and its
	// .bmap, .sha256 and .manifest.json.
	Dir   string
	Epoch int64
	// BuildRoot makes a Debian root tree (rootfs.Build; tests replace it).
	BuildRoot func(context.Context, rootfs.Options) error
	HTTP      *http.Client
	Log       *slog.Logger
	Progress  func(format string, args ...any)
	// Join gives the seed of a Pi of a self-joining rack (join: self) its
	// ticket (selfjoin.Endpoint.Seed), keeping previous (the ticket its
	// seed has, or "") while that is good; nil when no rack self-joins.
	Join func(n *inventory.Node, previous string) (*render.JoinSeed, error)
}

// Result is one built (or reused) image.
type Result struct {
	Image, Bmap, SHA256, Manifest string // paths
	M                             Manifest
	Cached                        bool
}

// Manifest is <image>.manifest.json.
type Manifest struct {
	Name           string               `json:"name"`
	Definition     string               `json:"definition"`
	InputHash      string               `json:"inputHash"`
	BuilderVersion string               `json:"builderVersion"`
	Source         string               `json:"source"` // debian or base
	BaseSHA256     string               `json:"baseSHA256,omitempty"`
	Image          string               `json:"image"` // file name
	ImageSize      int64                `json:"imageSize"`
	SHA256         string               `json:"sha256"`
	MappedBlocks   int64                `json:"mappedBlocks"`
	Epoch          int64                `json:"sourceDateEpoch"`
	Layout         Layout               `json:"layout"`
	SSHUser        string               `json:"sshUser"`
	Tuning         inventory.HostTuning `json:"tuning"`
	Radios         Radios               `json:"radios"`
	DockerDataRoot string               `json:"dockerDataRoot"`
	Files          []ManifestFile       `json:"files"`
	Packages       []Package            `json:"packages"`
}

// ManifestFile is one overlay entry as baked.
type ManifestFile struct {
	Path   string    `json:"path"`
	Kind   EntryKind `json:"kind"`
	Mode   string    `json:"mode,omitempty"`
	SHA256 string    `json:"sha256,omitempty"`
	Target string    `json:"target,omitempty"`
}

func (b *Builder) progress(format string, args ...any) {
	if b.Progress != nil {
		b.Progress(format, args...)
	}
}

func (b *Builder) epoch() int64 {
	if b.Epoch > 0 {
		return b.Epoch
	}
	return DefaultEpoch
}

// Definition loads a definition by name or path.
func (b *Builder) Definition(name string) (*Definition, error) {
	return LoadDefinition(b.Defs, name, b.Inv.Dir)
}

// Paths are where the outputs of definition name live.
func (b *Builder) Paths(name string) Result {
	dir := filepath.Join(b.Dir, name)
	img := filepath.Join(dir, name+".img")
	return Result{Image: img, Bmap: img + ".bmap", SHA256: img + ".sha256", Manifest: img + ".manifest.json"}
}

// Built returns the manifest of the image last built for definition name
// (a name or a definition's path).
func (b *Builder) Built(name string) (*Result, error) {
	if strings.HasSuffix(name, ".yaml") || strings.ContainsRune(name, os.PathSeparator) {
		def, err := b.Definition(name)
		if err != nil {
			return nil, err
		}
		name = def.Name
	}
	r := b.Paths(name)
	data, err := os.ReadFile(r.Manifest)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("image %s is not built yet: run `provision image build --image %s` first", name, name)
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &r.M); err != nil {
		return nil, fmt.Errorf("%s: %w", r.Manifest, err)
	}
	return &r, nil
}

// InputHash hashes everything an image is made from: the builder version,
// the definition and the files it names, the baked overlay (host tuning
// rendered from the templates, overlays), the SSH user and keys, the
// package list, the base image's sha256 and the time stamp.
func (b *Builder) InputHash(def *Definition) (string, Overlay, error) {
	lab, err := labOverlay(b.Inv, b.Renderer, def)
	if err != nil {
		return "", nil, err
	}
	h := sha256.New()
	field := func(h hash.Hash, name string, data []byte) {
		fmt.Fprintf(h, "%s %d\n", name, len(data))
		h.Write(data)
	}
	field(h, "builder", []byte(BuilderVersion))
	field(h, "definition", def.Raw)
	if def.Debian != nil {
		// What every Debian-built image gets besides the definition's own.
		field(h, "base packages", []byte(strings.Join(rootfs.BasePackages(), " ")))
		field(h, "initramfs modules", []byte(strings.Join(rootfs.InitramfsModules(), " ")))
	}
	for _, f := range []string{def.Boot.Config, def.Boot.Cmdline} {
		if f == "" {
			continue
		}
		data, err := fs.ReadFile(def.FS, f)
		if err != nil {
			return "", nil, fmt.Errorf("%s: %w", def.File, err)
		}
		field(h, "boot "+f, data)
	}
	for _, e := range lab {
		field(h, fmt.Sprintf("entry %s %s %o %d %d %s", e.Path, e.Kind, e.Mode, e.UID, e.GID, e.Target), e.Data)
	}
	field(h, "user", []byte(b.Inv.Lab.SSH.User))
	for _, k := range b.Inv.Lab.SSH.AuthorizedKeys {
		field(h, "key", []byte(k))
	}
	field(h, "epoch", []byte(strconv.FormatInt(b.epoch(), 10)))
	return hex.EncodeToString(h.Sum(nil)), lab, nil
}

// Plan says what Build would do with definition name.
type Plan struct {
	Name      string
	InputHash string
	Reuse     bool    // the last image has the same input hash and is whole
	Reason    string  // why it is built (or reused)
	Prev      *Result // the last image built, if any
}

// Plan works out whether Build would reuse the last image of definition
// name or build it again, without building.
func (b *Builder) Plan(name string) (*Plan, error) {
	def, err := b.Definition(name)
	if err != nil {
		return nil, err
	}
	p, _, err := b.plan(def)
	return p, err
}

func (b *Builder) plan(def *Definition) (*Plan, Overlay, error) {
	sum, lab, err := b.InputHash(def)
	if err != nil {
		return nil, nil, fmt.Errorf("image %s: %w", def.Name, err)
	}
	p := &Plan{Name: def.Name, InputHash: sum, Reason: "not built yet"}
	prev, err := b.Built(def.Name)
	if err != nil {
		return p, lab, nil
	}
	p.Prev = prev
	st, err := os.Stat(prev.Image)
	switch {
	case prev.M.InputHash != sum:
		p.Reason = fmt.Sprintf("inputs changed (last built from %.16s)", prev.M.InputHash)
	case err != nil:
		p.Reason = "the last image is missing: " + prev.Image
	case st.Size() != prev.M.ImageSize:
		p.Reason = fmt.Sprintf("the last image is %d bytes, its manifest says %d", st.Size(), prev.M.ImageSize)
	default:
		p.Reuse, p.Reason = true, "same input hash"
	}
	return p, lab, nil
}

// Build builds the image of definition name, or reuses the last one when
// its input hash is the same.
func (b *Builder) Build(ctx context.Context, name string) (*Result, error) {
	def, err := b.Definition(name)
	if err != nil {
		return nil, err
	}
	p, lab, err := b.plan(def)
	if err != nil {
		return nil, err
	}
	if p.Reuse {
		p.Prev.Cached = true
		return p.Prev, nil
	}
	sum := p.InputHash
	out := b.Paths(def.Name)
	if err := os.MkdirAll(filepath.Dir(out.Image), 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(filepath.Dir(out.Image), ".work-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	o := bakeOptions{Def: def, Lab: lab, User: b.Inv.Lab.SSH.User, Keys: b.Inv.Lab.SSH.AuthorizedKeys, Epoch: b.epoch(), Tmp: work}
	img := filepath.Join(work, def.Name+".img")
	m := Manifest{Name: def.Name, Definition: def.File, InputHash: sum, BuilderVersion: BuilderVersion,
		Image: filepath.Base(out.Image), Epoch: o.Epoch, SSHUser: o.User, Tuning: b.Inv.Lab.HostTuning,
		Radios: def.Radios, DockerDataRoot: def.DataRoot()}
	var l Layout
	switch {
	case def.Debian != nil:
		m.Source = "debian"
		l, err = b.fromDebian(ctx, def, img, sum, o)
	default:
		m.Source = "base"
		m.BaseSHA256 = def.Base.SHA256
		l, err = b.fromBase(ctx, def, img, o)
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", def.Name, err)
	}
	m.Layout = l

	b.progress("image %s: block map, sha256 and manifest", def.Name)
	if m.MappedBlocks, err = writeBmap(ctx, img, img+".bmap"); err != nil {
		return nil, err
	}
	if m.SHA256, err = sha256File(ctx, img); err != nil {
		return nil, err
	}
	st, err := os.Stat(img)
	if err != nil {
		return nil, err
	}
	m.ImageSize = st.Size()
	status, _, err := ext4{Image: img, Offset: l.Root.Start}.cat(ctx, "/var/lib/dpkg/status")
	if err != nil {
		return nil, fmt.Errorf("image %s: read the dpkg database: %w", def.Name, err)
	}
	if m.Packages, err = rootfs.ParseStatus(bytes.NewReader(status)); err != nil {
		return nil, fmt.Errorf("image %s: read the dpkg database: %w", def.Name, err)
	}
	for _, e := range lab {
		f := ManifestFile{Path: e.Path, Kind: e.Kind, Target: e.Target}
		if e.Kind == KindFile || e.Kind == KindDir {
			f.Mode = fmt.Sprintf("%04o", e.Mode.Perm())
		}
		if e.Kind == KindFile {
			s := sha256.Sum256(e.Data)
			f.SHA256 = hex.EncodeToString(s[:])
		}
		m.Files = append(m.Files, f)
	}
	if err := os.WriteFile(img+".sha256", []byte(m.SHA256+"  "+m.Image+"\n"), 0o644); err != nil {
		return nil, err
	}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(img+".manifest.json", append(mj, '\n'), 0o644); err != nil {
		return nil, err
	}
	// The manifest says the image is there: it moves last, after the
	// image, so an interrupted move leaves no manifest of a missing image.
	os.Remove(out.Manifest)
	for _, mv := range [][2]string{{img, out.Image}, {img + ".bmap", out.Bmap}, {img + ".sha256", out.SHA256}, {img + ".manifest.json", out.Manifest}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			return nil, err
		}
	}
	out.M = m
	return &out, nil
}

// ids derives the disk identifier, file system UUID and FAT volume ID from
// the input hash: the same inputs give the same disk, different images get
// different identifiers.
func ids(sum string) (diskID uint32, uuid string, volID uint32) {
	h, _ := hex.DecodeString(sum)
	diskID = binary.BigEndian.Uint32(h[0:4])
	u := h[4:20]
	u[6] = u[6]&0x0f | 0x40 // version 4 layout
	u[8] = u[8]&0x3f | 0x80
	uuid = fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	volID = binary.BigEndian.Uint32(h[20:24])
	return diskID, uuid, volID
}

func (b *Builder) fromDebian(ctx context.Context, def *Definition, img, sum string, o bakeOptions) (Layout, error) {
	build := b.BuildRoot
	if build == nil {
		build = rootfs.Build
	}
	root := filepath.Join(o.Tmp, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return Layout{}, err
	}
	db := def.Debian
	b.progress("image %s: Debian %s root file system (mmdebstrap, arm64)", def.Name, db.Suite)
	start := time.Now()
	err := build(ctx, rootfs.Options{Dir: root, Suite: db.Suite, Mirror: db.Mirror, Arch: "arm64",
		Components: db.Components, Packages: db.Packages, InitramfsModules: db.InitramfsModules,
		SourceDateEpoch: o.Epoch, Log: b.Log, Progress: b.Progress})
	if err != nil {
		return Layout{}, fmt.Errorf("root file system: %w", err)
	}
	b.progress("image %s: root file system in %s; assembling", def.Name, time.Since(start).Round(time.Second))
	diskID, uuid, volID := ids(sum)
	return Assemble(ctx, AssembleOptions{Root: root, Output: img, bakeOptions: o, DiskID: diskID, UUID: uuid, VolID: volID})
}

func (b *Builder) fromBase(ctx context.Context, def *Definition, img string, o bakeOptions) (Layout, error) {
	src, err := b.baseFile(ctx, def)
	if err != nil {
		return Layout{}, err
	}
	b.progress("image %s: copying the base image %s", def.Name, src)
	if err := unpack(ctx, src, img); err != nil {
		return Layout{}, err
	}
	b.progress("image %s: baking the lab in", def.Name)
	return customise(ctx, img, o)
}

// baseFile is the base image on disk, checked against base.sha256; a
// base.url is downloaded once into Dir/downloads.
func (b *Builder) baseFile(ctx context.Context, def *Definition) (string, error) {
	p := def.BasePath()
	if def.Base.URL != "" {
		p = filepath.Join(b.Dir, "downloads", def.Base.SHA256+"-"+filepath.Base(def.Base.URL))
		if _, err := os.Stat(p); err != nil {
			if err := b.download(ctx, def.Base.URL, p); err != nil {
				return "", err
			}
		}
	}
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("base image: %w (base.path in %s)", err, def.File)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("base image %s: %w", p, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != def.Base.SHA256 {
		return "", fmt.Errorf("base image %s has sha256 %s, but %s says %s: not the image the definition names", p, got, def.File, def.Base.SHA256)
	}
	return p, nil
}

func (b *Builder) download(ctx context.Context, url, dst string) error {
	client := b.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	b.progress("downloading %s", url)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("download base image: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("download base image %s: %s", url, resp.Status)
	}
	tmp := dst + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("download base image %s: %w", url, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}

// unpack copies the base image src (raw, or xz-compressed: recognised by
// its magic bytes) to dst as a sparse raw image.
func unpack(ctx context.Context, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	head := make([]byte, len(xzMagic))
	n, _ := in.ReadAt(head, 0)
	if n < len(xzMagic) || string(head) != string(xzMagic) {
		if err := copySparse(ctx, out, 0, in, st.Size()); err != nil {
			return err
		}
		if err := out.Truncate(st.Size()); err != nil {
			return err
		}
		return out.Close()
	}
	r, err := xz.NewReader(io.NewSectionReader(in, 0, st.Size()))
	if err != nil {
		return fmt.Errorf("base image %s: not a valid .xz file: %w", src, err)
	}
	w := &sparseWriter{f: out}
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("base image %s: the .xz file is truncated or corrupt after %s of image: %w", src, HumanBytes(w.off), rerr)
		}
	}
	if err := out.Truncate(w.off); err != nil {
		return err
	}
	return out.Close()
}

// Inspect says what the image file at p (raw or .xz) is, without changing
// it; a .xz is unpacked into a scratch file under tmp first.
func Inspect(ctx context.Context, p, tmp string) (Layout, error) {
	f, err := os.Open(p)
	if err != nil {
		return Layout{}, err
	}
	defer f.Close()
	head := make([]byte, len(xzMagic))
	if n, _ := f.ReadAt(head, 0); n == len(xzMagic) && string(head) == string(xzMagic) {
		dir, err := os.MkdirTemp(tmp, "provision-inspect-")
		if err != nil {
			return Layout{}, err
		}
		defer os.RemoveAll(dir)
		raw := filepath.Join(dir, "image.img")
		if err := unpack(ctx, p, raw); err != nil {
			return Layout{}, err
		}
		rf, err := os.Open(raw)
		if err != nil {
			return Layout{}, err
		}
		defer rf.Close()
		return detect(ctx, rf, raw)
	}
	return detect(ctx, f, p)
}
