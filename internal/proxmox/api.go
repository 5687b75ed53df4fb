package proxmox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Num is a JSON number PVE may also send as a string ("1") or a boolean;
// typed helpers use it so a PVE version's change of mind does not break us.
type Num int64

// UnmarshalJSON accepts 1, 1.0, "1", true and null.
func (n *Num) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*n = 0
		return nil
	case bytes.Equal(b, []byte("true")):
		*n = 1
		return nil
	case bytes.Equal(b, []byte("false")):
		*n = 0
		return nil
	}
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	s = strings.TrimSpace(s)
	if s == "" {
		*n = 0
		return nil
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		*n = Num(i)
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("%q is not a number", s)
	}
	*n = Num(f)
	return nil
}

// Version is GET /version.
type Version struct {
	Version string `json:"version"` // "9.1.1"
	Release string `json:"release"` // "9.1"
	RepoID  string `json:"repoid"`
}

// Major and Minor parse Version ("9.1.1" → 9, 1); 0 when unparsable.
func (v Version) Major() int { return versionPart(v.Version, 0) }

// Minor is the second component of Version.
func (v Version) Minor() int { return versionPart(v.Version, 1) }

func versionPart(s string, i int) int {
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' || r == '~' })
	if i >= len(parts) {
		return 0
	}
	n, _ := strconv.Atoi(parts[i])
	return n
}

// Version asks the API for its version; it is also the cheapest call that
// proves the token works.
func (c *Client) Version(ctx context.Context) (Version, error) {
	var v Version
	err := c.Get(ctx, "/version", nil, &v)
	return v, err
}

// Node is one entry of GET /nodes.
type Node struct {
	Node   string `json:"node"`
	Status string `json:"status"` // online | offline | unknown
	Uptime Num    `json:"uptime"`
	MaxCPU Num    `json:"maxcpu"`
	MaxMem Num    `json:"maxmem"`
	Mem    Num    `json:"mem"`
}

// Nodes lists the cluster's nodes.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var ns []Node
	err := c.Get(ctx, "/nodes", nil, &ns)
	return ns, err
}

// NodeTime is GET /nodes/{node}/time.
type NodeTime struct {
	Time      Num    `json:"time"`      // seconds since the epoch (UTC)
	LocalTime Num    `json:"localtime"` // the same in the node's time zone
	Timezone  string `json:"timezone"`
}

// NodeTime reads a node's clock.
func (c *Client) NodeTime(ctx context.Context, node string) (NodeTime, error) {
	var t NodeTime
	err := c.Get(ctx, Path("nodes", node, "time"), nil, &t)
	return t, err
}

// Resource is one entry of GET /cluster/resources.
type Resource struct {
	ID         string `json:"id"`   // "qemu/100", "storage/pve1/local"
	Type       string `json:"type"` // qemu, lxc, storage, node, ...
	Node       string `json:"node"`
	VMID       Num    `json:"vmid"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	Template   Num    `json:"template"`
	Lock       string `json:"lock"`
	Tags       string `json:"tags"`
	Pool       string `json:"pool"`
	HAState    string `json:"hastate"`
	MaxMem     Num    `json:"maxmem"`
	MaxCPU     Num    `json:"maxcpu"`
	Uptime     Num    `json:"uptime"`
	Storage    string `json:"storage"`
	Content    string `json:"content"`
	Shared     Num    `json:"shared"`
	Disk       Num    `json:"disk"`
	MaxDisk    Num    `json:"maxdisk"`
	PluginType string `json:"plugintype"`
}

// ClusterResources lists the cluster's resources of one type ("vm",
// "storage", "node"; "" for all).
func (c *Client) ClusterResources(ctx context.Context, typ string) ([]Resource, error) {
	var q url.Values
	if typ != "" {
		q = url.Values{"type": {typ}}
	}
	var rs []Resource
	err := c.Get(ctx, "/cluster/resources", q, &rs)
	return rs, err
}

// StorageConfig is one entry of GET /storage (the datacenter's storage.cfg).
type StorageConfig struct {
	Storage string `json:"storage"`
	Type    string `json:"type"`
	Content string `json:"content"` // comma-separated content types
	Shared  Num    `json:"shared"`
	Nodes   string `json:"nodes"` // comma-separated; empty: all nodes
	Path    string `json:"path"`
	Disable Num    `json:"disable"`
}

// Storages lists the datacenter's storage definitions.
func (c *Client) Storages(ctx context.Context) ([]StorageConfig, error) {
	var ss []StorageConfig
	err := c.Get(ctx, "/storage", nil, &ss)
	return ss, err
}

// NodeStorage is one entry of GET /nodes/{node}/storage: a storage as one
// node sees it, with its space.
type NodeStorage struct {
	Storage string `json:"storage"`
	Type    string `json:"type"`
	Content string `json:"content"`
	Active  Num    `json:"active"`
	Enabled Num    `json:"enabled"`
	Shared  Num    `json:"shared"`
	Total   Num    `json:"total"`
	Used    Num    `json:"used"`
	Avail   Num    `json:"avail"`
}

// HasContent says whether the storage holds content type t ("snippets").
func (s NodeStorage) HasContent(t string) bool { return hasContent(s.Content, t) }

// HasContent says whether the storage definition allows content type t.
func (s StorageConfig) HasContent(t string) bool { return hasContent(s.Content, t) }

func hasContent(list, t string) bool {
	for _, c := range strings.Split(list, ",") {
		if strings.TrimSpace(c) == t {
			return true
		}
	}
	return false
}

// NodeStorages lists the storages a node can use.
func (c *Client) NodeStorages(ctx context.Context, node string) ([]NodeStorage, error) {
	var ss []NodeStorage
	err := c.Get(ctx, Path("nodes", node, "storage"), nil, &ss)
	return ss, err
}

// Volume is one entry of GET /nodes/{node}/storage/{storage}/content.
type Volume struct {
	VolID   string `json:"volid"` // "local:import/debian-12-genericcloud-amd64.qcow2"
	Content string `json:"content"`
	Format  string `json:"format"`
	Size    Num    `json:"size"`
	VMID    Num    `json:"vmid"`
}

// StorageContent lists a storage's volumes on a node, of one content type
// ("" for all).
func (c *Client) StorageContent(ctx context.Context, node, storage, content string) ([]Volume, error) {
	var q url.Values
	if content != "" {
		q = url.Values{"content": {content}}
	}
	var vs []Volume
	err := c.Get(ctx, Path("nodes", node, "storage", storage, "content"), q, &vs)
	return vs, err
}

// Permissions is GET /access/permissions: path → privilege → propagate flag.
type Permissions map[string]map[string]Num

// Has says whether privilege priv is granted on path.
func (p Permissions) Has(path, priv string) bool {
	_, ok := p[path][priv]
	return ok
}

// Permissions returns the privileges of authID (a user or a full token ID;
// "" for the caller itself), on path ("" for every path with an ACL).
func (c *Client) Permissions(ctx context.Context, authID, path string) (Permissions, error) {
	q := url.Values{}
	if authID != "" {
		q.Set("userid", authID)
	}
	if path != "" {
		q.Set("path", path)
	}
	var p Permissions
	err := c.Get(ctx, "/access/permissions", q, &p)
	return p, err
}

// User is one entry of GET /access/users?full=1.
type User struct {
	UserID string `json:"userid"`
	Enable Num    `json:"enable"`
	Tokens []struct {
		TokenID string `json:"tokenid"`
		PrivSep Num    `json:"privsep"`
	} `json:"tokens"`
}

// Users lists the users the token may see, with their tokens
// (GET /access/users?full=1, the call the Telmate provider's permission
// check makes).
func (c *Client) Users(ctx context.Context) ([]User, error) {
	var us []User
	err := c.Get(ctx, "/access/users", url.Values{"full": {"1"}}, &us)
	return us, err
}

// NextIDFree asks the cluster whether vmid is free (GET /cluster/nextid?vmid=N).
// A taken id is (false, nil); PVE reserves nothing, so this is a snapshot.
func (c *Client) NextIDFree(ctx context.Context, vmid int) (bool, error) {
	var id json.RawMessage
	err := c.Get(ctx, "/cluster/nextid", url.Values{"vmid": {strconv.Itoa(vmid)}}, &id)
	if err == nil {
		return true, nil
	}
	var e *APIError
	if errors.As(err, &e) && e.StatusCode == 400 && e.Errors["vmid"] != "" {
		return false, nil
	}
	return false, err
}

// VMSummary is one entry of GET /nodes/{node}/qemu.
type VMSummary struct {
	VMID     Num    `json:"vmid"`
	Name     string `json:"name"`
	Status   string `json:"status"`
	Template Num    `json:"template"`
	Lock     string `json:"lock"`
}

// VMs lists a node's QEMU VMs.
func (c *Client) VMs(ctx context.Context, node string) ([]VMSummary, error) {
	var vs []VMSummary
	err := c.Get(ctx, Path("nodes", node, "qemu"), nil, &vs)
	return vs, err
}

// VMConfig is a VM's configuration as PVE returns it, every value as text
// (numbers formatted as PVE stores them).
type VMConfig map[string]string

// VMConfig reads a QEMU VM's current configuration.
func (c *Client) VMConfig(ctx context.Context, node string, vmid int) (VMConfig, error) {
	return c.GuestConfig(ctx, node, "qemu", vmid)
}

// GuestConfig reads the current configuration of a guest of kind "qemu" or
// "lxc" (the type field of /cluster/resources).
func (c *Client) GuestConfig(ctx context.Context, node, kind string, vmid int) (VMConfig, error) {
	if kind != "qemu" && kind != "lxc" {
		return nil, fmt.Errorf("guest %d on %s: unknown kind %q (qemu or lxc)", vmid, node, kind)
	}
	var raw map[string]json.RawMessage
	if err := c.Get(ctx, Path("nodes", node, kind, strconv.Itoa(vmid), "config"), nil, &raw); err != nil {
		return nil, err
	}
	cfg := make(VMConfig, len(raw))
	for k, v := range raw {
		var s string
		if json.Unmarshal(v, &s) == nil {
			cfg[k] = s
			continue
		}
		cfg[k] = string(bytes.TrimSpace(v)) // numbers as written: 2048, 1
	}
	return cfg, nil
}

// Keys returns the config's keys, sorted.
func (cfg VMConfig) Keys() []string { return slices.Sorted(maps.Keys(cfg)) }

// CreateVM creates a VM on node (POST /nodes/{node}/qemu) and returns the
// task's UPID. params holds vmid, name and the hardware options.
func (c *Client) CreateVM(ctx context.Context, node string, params url.Values) (string, error) {
	if params.Get("vmid") == "" {
		return "", fmt.Errorf("create VM on %s: no vmid given", node)
	}
	return c.task(ctx, "POST", Path("nodes", node, "qemu"), params)
}

// Template converts a VM into a template. The UPID is empty when PVE did
// the work synchronously.
func (c *Client) Template(ctx context.Context, node string, vmid int) (string, error) {
	return c.task(ctx, "POST", Path("nodes", node, "qemu", strconv.Itoa(vmid), "template"), nil)
}

// DeleteVM destroys a VM (it must be stopped) and returns the task's UPID.
func (c *Client) DeleteVM(ctx context.Context, node string, vmid int) (string, error) {
	return c.task(ctx, "DELETE", Path("nodes", node, "qemu", strconv.Itoa(vmid)), nil)
}

// Download is a request to make a node fetch a file into a storage
// (POST /nodes/{node}/storage/{storage}/download-url).
type Download struct {
	Content           string // iso | vztmpl | import
	Filename          string
	URL               string
	Checksum          string // hex; empty: none
	ChecksumAlgorithm string // md5, sha1, sha224, sha256, sha384, sha512
	// SkipCertificateCheck sends verify-certificates=0 (PVE verifies by default).
	SkipCertificateCheck bool
}

// DownloadURL starts a download task on node and returns its UPID.
func (c *Client) DownloadURL(ctx context.Context, node, storage string, d Download) (string, error) {
	p := url.Values{"content": {d.Content}, "filename": {d.Filename}, "url": {d.URL}}
	if d.Checksum != "" {
		p.Set("checksum", d.Checksum)
		p.Set("checksum-algorithm", d.ChecksumAlgorithm)
	}
	if d.SkipCertificateCheck {
		p.Set("verify-certificates", "0")
	}
	return c.task(ctx, "POST", Path("nodes", node, "storage", storage, "download-url"), p)
}

// task sends a write that answers with a UPID (or null when PVE finished it
// synchronously).
func (c *Client) task(ctx context.Context, method, path string, params url.Values) (string, error) {
	var upid *string
	if err := c.do(ctx, method, path, params, &upid); err != nil {
		return "", err
	}
	if upid == nil {
		return "", nil
	}
	if _, err := ParseUPID(*upid); err != nil {
		return "", fmt.Errorf("%s %s: %w", method, path, err)
	}
	return *upid, nil
}

// RunTask sends a write that starts a task and waits for it (timeout 0: until
// ctx ends).
func (c *Client) RunTask(ctx context.Context, upid string, err error, timeout time.Duration) error {
	if err != nil || upid == "" {
		return err
	}
	return c.WaitTask(ctx, upid, timeout)
}
