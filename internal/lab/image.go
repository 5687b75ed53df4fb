package lab

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"time"

	"github.com/docker/docker/client"

	"github.com/fhlab/provision/internal/par"
)

// BusyboxImageTag is the tag of the smoke-test image; nothing can be
// pulled in the emulated lab, so the image is built here and loaded.
const BusyboxImageTag = "provision/busybox:lab"

// DefaultApplets returns the busybox applets linked into the image, a new
// slice each call. (Debian's static busybox crashes in wget; nc works.)
func DefaultApplets() []string {
	return []string{
		"sh", "nc", "sleep", "hostname", "ip", "ifconfig", "ping", "nslookup",
		"cat", "echo", "printf", "ls", "ps", "env", "id", "grep", "head", "wc",
		"tr", "seq", "date", "uname", "true", "false", "mkdir", "rm", "kill",
	}
}

// ImageOptions says what WriteBusyboxImage builds.
type ImageOptions struct {
	// Busybox is a statically linked busybox; default /bin/busybox (Debian
	// busybox-static).
	Busybox string
	// Tag defaults to BusyboxImageTag.
	Tag string
	// Applets become symlinks in /bin; default DefaultApplets().
	Applets []string
}

// imageTime is every timestamp in the image, so the same busybox always
// gives the same image ID.
var imageTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// WriteBusyboxImage writes a one-layer image in `docker save` format
// (manifest.json, the config JSON, the layer tar) to w, ready for POST
// /images/load. The layer holds the busybox binary in /bin with applet
// symlinks, /tmp and a minimal /etc/passwd. It returns the image ID.
func WriteBusyboxImage(w io.Writer, opts ImageOptions) (string, error) {
	if opts.Busybox == "" {
		opts.Busybox = "/bin/busybox"
	}
	if opts.Tag == "" {
		opts.Tag = BusyboxImageTag
	}
	if opts.Applets == nil {
		opts.Applets = DefaultApplets()
	}
	arch, err := staticArch(opts.Busybox)
	if err != nil {
		return "", err
	}
	bin, err := os.ReadFile(opts.Busybox)
	if err != nil {
		return "", fmt.Errorf("build busybox image: %w", err)
	}
	layer, err := busyboxLayer(bin, opts.Applets)
	if err != nil {
		return "", fmt.Errorf("build busybox image: %w", err)
	}
	layerSum := sha256.Sum256(layer)
	layerID := hex.EncodeToString(layerSum[:])

	cfg := map[string]any{
		"architecture": arch,
		"os":           "linux",
		"created":      imageTime,
		"config": map[string]any{
			"Env":        []string{"PATH=/bin"},
			"Cmd":        []string{"sh"},
			"WorkingDir": "/",
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerID}},
		"history": []map[string]any{{
			"created":    imageTime,
			"created_by": "provision lab: " + opts.Busybox + " with applet links",
		}},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	cfgSum := sha256.Sum256(cfgJSON)
	imageID := hex.EncodeToString(cfgSum[:])
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   imageID + ".json",
		"RepoTags": []string{opts.Tag},
		"Layers":   []string{layerID + "/layer.tar"},
	}})
	if err != nil {
		return "", err
	}

	tw := tar.NewWriter(w)
	files := []struct {
		name string
		data []byte
	}{
		{imageID + ".json", cfgJSON},
		{layerID + "/layer.tar", layer},
		{"manifest.json", manifest},
	}
	if err := tw.WriteHeader(dirHeader(layerID+"/", 0o755)); err != nil {
		return "", err
	}
	for _, f := range files {
		if err := writeFile(tw, f.name, 0o644, f.data); err != nil {
			return "", fmt.Errorf("write busybox image: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("write busybox image: %w", err)
	}
	return "sha256:" + imageID, nil
}

// busyboxLayer is the image's only layer.
func busyboxLayer(bin []byte, applets []string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []struct {
		name string
		mode int64
	}{{"bin/", 0o755}, {"etc/", 0o755}, {"root/", 0o700}, {"tmp/", 0o1777}} {
		if err := tw.WriteHeader(dirHeader(d.name, d.mode)); err != nil {
			return nil, err
		}
	}
	if err := writeFile(tw, "bin/busybox", 0o755, bin); err != nil {
		return nil, err
	}
	for _, a := range applets {
		if a == "" || a == "busybox" || path.Base(a) != a {
			return nil, fmt.Errorf("applet name %q", a)
		}
		h := &tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: imageTime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
	}
	etc := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for _, name := range []string{"etc/group", "etc/passwd"} {
		if err := writeFile(tw, name, 0o644, []byte(etc[name])); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func dirHeader(name string, mode int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: imageTime, Format: tar.FormatPAX}
}

func writeFile(tw *tar.Writer, name string, mode int64, data []byte) error {
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: imageTime, Format: tar.FormatPAX}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// staticArch checks that the binary is a static ELF executable (an image
// has no libc to offer) and returns its Docker architecture name.
func staticArch(file string) (string, error) {
	f, err := elf.Open(file)
	if err != nil {
		return "", fmt.Errorf("busybox %s: %w (install busybox-static)", file, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("busybox %s is dynamically linked: the image needs a static one (install busybox-static)", file)
		}
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	case elf.EM_ARM:
		return "arm", nil
	case elf.EM_386:
		return "386", nil
	}
	return "", fmt.Errorf("busybox %s: unsupported machine %s", file, f.Machine)
}

// LoadImage loads an image tar (`docker save` format) into the dockerd
// on socket through the Engine API (POST /images/load).
func LoadImage(ctx context.Context, socket string, image io.Reader) error {
	c, err := NewEngine(socket)
	if err != nil {
		return err
	}
	defer c.Close()
	return loadImage(ctx, c, image)
}

func loadImage(ctx context.Context, c *client.Client, image io.Reader) error {
	resp, err := c.ImageLoad(ctx, image, client.ImageLoadWithQuiet(true))
	if err != nil {
		return fmt.Errorf("load image: %w", err)
	}
	defer resp.Body.Close()
	if !resp.JSON {
		_, err := io.Copy(io.Discard, resp.Body)
		return err
	}
	// The answer is a stream of JSON messages; a failure is one with an
	// error in it.
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("load image: read answer: %w", err)
		}
		if msg.ErrorDetail.Message != "" {
			return fmt.Errorf("load image: %s", msg.ErrorDetail.Message)
		}
		if msg.Error != "" {
			return fmt.Errorf("load image: %s", msg.Error)
		}
	}
}

// LoadImage loads an image tar into every node of the lab, Concurrency at
// a time.
func (l *Lab) LoadImage(ctx context.Context, image []byte) error {
	nodes, err := l.Nodes()
	if err != nil {
		return err
	}
	if len(nodes) == 0 {
		return errors.New("load image: the lab has no nodes (lab up first)")
	}
	// A netboot node gets it when Boot starts its system.
	nodes = slices.DeleteFunc(nodes, Node.WaitingForBoot)
	return par.Each(ctx, l.cfg.Concurrency, len(nodes), func(ctx context.Context, i int) error {
		if err := LoadImage(ctx, nodes[i].DockerSocket, bytes.NewReader(image)); err != nil {
			return fmt.Errorf("lab %s: %w", nodes[i].Name, err)
		}
		return nil
	})
}
