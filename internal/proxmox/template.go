package proxmox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fhlab/provision/internal/par"
)

// Debian 12 (bookworm) generic cloud image: the default for `provision
// template`. "latest" moves; its checksum is read from SHA512SUMS next to it
// unless one is given.
const DefaultImageURL = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"

// TemplateSpec is what `provision template` makes on each node.
type TemplateSpec struct {
	Name     string // the template's VM name (inventory proxmox.template)
	Hardware Hardware
	Nodes    []string
	// VMIDBase: Nodes[i]'s template gets VMIDBase+i.
	VMIDBase int
	// ImageURL is the cloud image; ImageSHA512 its checksum (hex). The
	// checksum is needed only when a step downloads the image (see
	// NeedsDownload): planning works without it, offline.
	ImageURL, ImageSHA512 string
	// ImageStorage holds the image as import content (e.g. "local").
	ImageStorage string
	// TaskTimeout bounds each task (download, create, template).
	TaskTimeout time.Duration
	Concurrency int
}

// ImageFilename is the name the image gets in the import storage: the URL's
// last path element, which must end in .qcow2, .raw or .vmdk (PVE's rule for
// import content).
func (s TemplateSpec) ImageFilename() (string, error) {
	u, err := url.Parse(s.ImageURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("image URL %q: not an http(s) URL", s.ImageURL)
	}
	name := path.Base(u.Path)
	if !regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*\.(qcow2|raw|vmdk)$`).MatchString(name) {
		return "", fmt.Errorf("image URL %q: the file name %q must end in .qcow2, .raw or .vmdk to be imported", s.ImageURL, name)
	}
	return name, nil
}

// TemplateStep is the plan for one node.
type TemplateStep struct {
	Node     string
	VMID     int
	Exists   bool // a template with the name is already there (VMID is its id)
	Download bool // the image must be fetched first
	Shared   bool // the image storage is shared: one download serves all
	Volume   string
	Problem  error // the node cannot be done; nothing will be changed on it
}

// String is the plan line for the step.
func (s TemplateStep) String() string {
	switch {
	case s.Problem != nil:
		return "cannot: " + s.Problem.Error()
	case s.Exists:
		return fmt.Sprintf("template present (VMID %d): nothing to do", s.VMID)
	case s.Download && s.Shared:
		return fmt.Sprintf("download the image to %s (shared: once for all hosts), create VM %d from it, make it a template", s.Volume, s.VMID)
	case s.Download:
		return fmt.Sprintf("download the image to %s, create VM %d from it, make it a template", s.Volume, s.VMID)
	default:
		return fmt.Sprintf("image present (%s); create VM %d from it, make it a template", s.Volume, s.VMID)
	}
}

// PlanTemplates reads, without changing anything, what each node needs.
func PlanTemplates(ctx context.Context, c *Client, spec TemplateSpec) ([]TemplateStep, error) {
	if spec.Name == "" {
		return nil, errors.New("template: no template name (proxmox.template)")
	}
	if spec.VMIDBase < 100 || spec.VMIDBase+len(spec.Nodes)-1 > 999999999 {
		return nil, fmt.Errorf("template: VMID %d: Proxmox VMIDs run from 100 to 999999999", spec.VMIDBase)
	}
	if spec.ImageSHA512 != "" {
		if err := checkSHA512(spec.ImageSHA512); err != nil {
			return nil, err
		}
	}
	file, err := spec.ImageFilename()
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	guests, err := c.ClusterResources(ctx, "vm")
	if err != nil {
		return nil, fmt.Errorf("template: list the cluster's guests: %w", err)
	}
	steps := make([]TemplateStep, len(spec.Nodes))
	var todo []int
	for i, node := range spec.Nodes {
		st := TemplateStep{Node: node, VMID: spec.VMIDBase + i, Volume: spec.ImageStorage + ":import/" + file}
		for _, g := range guests {
			if g.Type != "qemu" || g.Node != node || g.Name != spec.Name {
				continue
			}
			if g.Template != 0 {
				st.Exists, st.VMID = true, int(g.VMID)
				break
			}
			st.Problem = fmt.Errorf("VM %d on %s is named %s but is not a template: if it is the prepared image, qm template %d; otherwise remove or rename it", g.VMID, node, spec.Name, g.VMID)
		}
		if st.Exists {
			st.Problem = nil
		} else if st.Problem == nil {
			for _, g := range guests {
				if int(g.VMID) == st.VMID {
					st.Problem = fmt.Errorf("VMID %d is taken by %q on %s: pass another --vmid", st.VMID, g.Name, g.Node)
				}
			}
			todo = append(todo, i)
		}
		steps[i] = st
	}
	err = par.Each(ctx, concurrency(spec.Concurrency), len(todo), func(ctx context.Context, j int) error {
		st := &steps[todo[j]]
		if st.Problem == nil {
			st.Problem = planNode(ctx, c, spec, st, file)
		}
		return nil
	})
	return steps, err
}

// planNode checks one node that needs a template: VMID free, storages able,
// the image present or not.
func planNode(ctx context.Context, c *Client, spec TemplateSpec, st *TemplateStep, file string) error {
	free, err := c.NextIDFree(ctx, st.VMID)
	if err != nil {
		return fmt.Errorf("check VMID %d: %w", st.VMID, err)
	}
	if !free {
		return fmt.Errorf("VMID %d is taken: pass another --vmid", st.VMID)
	}
	ss, err := c.NodeStorages(ctx, st.Node)
	if err != nil {
		return fmt.Errorf("list storages: %w", err)
	}
	find := func(id string) *NodeStorage {
		for i := range ss {
			if ss[i].Storage == id {
				return &ss[i]
			}
		}
		return nil
	}
	img := find(spec.ImageStorage)
	switch {
	case img == nil:
		return fmt.Errorf("storage %s (--image-storage) is not available on %s", spec.ImageStorage, st.Node)
	case !img.HasContent("import"):
		return fmt.Errorf("storage %s does not allow import content (content: %s): pvesm set %s --content %s", spec.ImageStorage, img.Content, spec.ImageStorage, strings.Trim(img.Content+",import", ","))
	}
	st.Shared = img.Shared != 0
	for _, id := range []string{spec.Hardware.DiskStorage, spec.Hardware.CloudInitStorage} {
		d := find(id)
		if d == nil {
			return fmt.Errorf("storage %s (proxmox.storage) is not available on %s", id, st.Node)
		}
		if !d.HasContent("images") {
			return fmt.Errorf("storage %s does not hold VM disks (content: %s): pvesm set %s --content %s", id, d.Content, id, strings.Trim(d.Content+",images", ","))
		}
	}
	vols, err := c.StorageContent(ctx, st.Node, spec.ImageStorage, "import")
	if err != nil {
		return fmt.Errorf("list %s: %w", spec.ImageStorage, err)
	}
	st.Download = !slices.ContainsFunc(vols, func(v Volume) bool { return v.VolID == st.Volume })
	return nil
}

func checkSHA512(sum string) error {
	if !regexp.MustCompile(`^[0-9a-fA-F]{128}$`).MatchString(sum) {
		return fmt.Errorf("template: sha512 %q: not 128 hex digits", sum)
	}
	return nil
}

// NeedsDownload reports whether carrying out steps downloads the image,
// the only case that needs its checksum.
func NeedsDownload(steps []TemplateStep) bool {
	return slices.ContainsFunc(steps, func(st TemplateStep) bool { return st.Problem == nil && !st.Exists && st.Download })
}

// ApplyTemplates carries out the plan, nodes concurrently; progress gets one
// line per step and node. Nodes with a problem or a template are left alone.
// A shared image storage is downloaded to once.
func ApplyTemplates(ctx context.Context, c *Client, spec TemplateSpec, steps []TemplateStep, progress func(node, msg string)) error {
	file, err := spec.ImageFilename()
	if err != nil {
		return err
	}
	if NeedsDownload(steps) {
		if err := checkSHA512(spec.ImageSHA512); err != nil {
			return fmt.Errorf("%w (a download needs the image's checksum)", err)
		}
	}
	var once sync.Map // shared storage → *downloadOnce
	return par.Each(ctx, concurrency(spec.Concurrency), len(steps), func(ctx context.Context, i int) error {
		st := steps[i]
		if st.Problem != nil || st.Exists {
			return nil
		}
		if err := applyNode(ctx, c, spec, st, file, &once, progress); err != nil {
			progress(st.Node, "failed: "+err.Error())
			return fmt.Errorf("template on %s: %w", st.Node, err)
		}
		return nil
	})
}

type downloadOnce struct {
	once sync.Once
	err  error
}

func applyNode(ctx context.Context, c *Client, spec TemplateSpec, st TemplateStep, file string, once *sync.Map, progress func(node, msg string)) error {
	if st.Download {
		download := func() error {
			progress(st.Node, "downloading "+spec.ImageURL+" to "+st.Volume)
			upid, err := c.DownloadURL(ctx, st.Node, spec.ImageStorage, Download{
				Content: "import", Filename: file, URL: spec.ImageURL,
				Checksum: strings.ToLower(spec.ImageSHA512), ChecksumAlgorithm: "sha512",
			})
			if err != nil {
				return fmt.Errorf("download image: %w", err)
			}
			if err := c.WaitTask(ctx, upid, spec.TaskTimeout); err != nil {
				return fmt.Errorf("download image: %w", err)
			}
			return nil
		}
		var err error
		if st.Shared {
			v, _ := once.LoadOrStore(spec.ImageStorage, &downloadOnce{})
			d := v.(*downloadOnce)
			d.once.Do(func() { d.err = download() })
			err = d.err
		} else {
			err = download()
		}
		if err != nil {
			return err
		}
	}
	hw := spec.Hardware
	params := url.Values{
		"vmid":           {strconv.Itoa(st.VMID)},
		"name":           {spec.Name},
		"memory":         {hw.memoryValue()},
		"cores":          {hw.coresValue()},
		"scsihw":         {hw.SCSIHW},
		"bios":           {hw.BIOS},
		"boot":           {hw.Boot},
		"ostype":         {hw.OSType},
		"agent":          {hw.agentValue()},
		"serial0":        {hw.Serial0},
		"vga":            {hw.VGA},
		"net0":           {hw.Net0()},
		hw.DiskSlot:      {hw.DiskStorage + ":0,import-from=" + st.Volume},
		hw.CloudInitSlot: {hw.CloudInitStorage + ":cloudinit"},
		"description":    {"cloud-init template made by provision template from " + spec.ImageURL},
	}
	progress(st.Node, fmt.Sprintf("creating VM %d %s from %s", st.VMID, spec.Name, st.Volume))
	upid, err := c.CreateVM(ctx, st.Node, params)
	if err := c.RunTask(ctx, upid, err, spec.TaskTimeout); err != nil {
		return fmt.Errorf("create VM %d: %w", st.VMID, err)
	}
	progress(st.Node, fmt.Sprintf("converting VM %d to a template", st.VMID))
	upid, err = c.Template(ctx, st.Node, st.VMID)
	if err := c.RunTask(ctx, upid, err, spec.TaskTimeout); err != nil {
		return fmt.Errorf("convert VM %d to a template (the VM stays; remove it with qm destroy %d on %s before a re-run): %w", st.VMID, st.VMID, st.Node, err)
	}
	progress(st.Node, fmt.Sprintf("template %s ready (VMID %d)", spec.Name, st.VMID))
	return nil
}

// FetchSHA512 reads the checksum of imageURL from the SHA512SUMS file in
// the same directory (as cloud.debian.org publishes it), with hc.
func FetchSHA512(ctx context.Context, hc *http.Client, imageURL string) (string, error) {
	u, err := url.Parse(imageURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("image URL %q: not a URL", imageURL)
	}
	name := path.Base(u.Path)
	sums := *u
	sums.Path = path.Join(path.Dir(u.Path), "SHA512SUMS")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sums.String(), nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("read the image's checksum: %w (pass --sha512)", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("read the image's checksum: GET %s: %s (pass --sha512)", sums.String(), resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && strings.TrimPrefix(f[1], "*") == name && regexp.MustCompile(`^[0-9a-fA-F]{128}$`).MatchString(f[0]) {
			return strings.ToLower(f[0]), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read %s: %w", sums.String(), err)
	}
	return "", fmt.Errorf("%s does not list %s (pass --sha512)", sums.String(), name)
}

func concurrency(n int) int {
	if n < 1 {
		return 8
	}
	return n
}
