package pvesim

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure a Sim. The zero value is usable.
type Options struct {
	Version      string        // PVE version /version reports; default "9.1.1"
	Cluster      string        // cluster name; default "pvesim"
	TaskDuration time.Duration // how long a task runs; 0: done before the POST answers
	// LockTimeout is how long an operation waits for a VM's config lock
	// before failing with PVE's "can't lock file ... got timeout";
	// default 10 s like PVE's lock_config.
	LockTimeout time.Duration
	// ReadTimeout bounds how long a client may take to send one request,
	// headers and body (default 30 s); IdleTimeout how long a kept-alive
	// connection may wait for the next one (default 60 s). Listen closes
	// connections that take longer.
	ReadTimeout, IdleTimeout time.Duration
	// AuthFailureDelay delays 401 answers like PVE's 3 s; default 0.
	AuthFailureDelay time.Duration
	Log              *slog.Logger     // default: discard; never logs secrets
	Now              func() time.Time // default time.Now
	// OnStart runs in a VM's start task (e.g. to start an emulated lab
	// node); an error fails the task with its text.
	OnStart func(ctx context.Context, vm VMEvent) error
	// OnStop runs in a VM's stop/shutdown task.
	OnStop func(ctx context.Context, vm VMEvent) error
	// Agent answers agent/network-get-interfaces for a running VM with the
	// agent enabled; nil means the agent is never running (PVE's
	// "QEMU guest agent is not running").
	Agent func(ctx context.Context, vm VMEvent) ([]AgentInterface, error)
	// Download fetches a download-url URL. Default: HTTP(S) GET of
	// loopback hosts only (127.0.0.0/8, ::1, localhost); any other host
	// fails the task.
	Download func(ctx context.Context, url string) (io.ReadCloser, error)
	// PlaceholderDownloads (local rehearsal only) makes download-url of a
	// non-loopback URL store a placeholder instead of fetching it: a qcow2
	// header announcing 3 GiB for .qcow2 names, an empty file otherwise;
	// the checksum is not verified and the task log says so.
	PlaceholderDownloads bool
	// InsecureDownloads lets the default Download skip TLS verification
	// (for loopback test servers with their own certificates).
	InsecureDownloads bool
}

// VMEvent describes a VM being started or stopped.
type VMEvent struct {
	Node    string
	VMID    int
	Name    string
	IP      netip.Prefix // from ipconfig0 ip=; invalid when DHCP or unset
	Gateway string       // from ipconfig0 gw=
	Config  map[string]string
}

// AgentInterface is one interface the guest agent reports.
type AgentInterface struct {
	Name            string
	HardwareAddress string
	Addresses       []netip.Prefix
}

// Storage is a storage definition (storage.cfg) plus its size on each node.
type Storage struct {
	ID      string
	Type    string   // dir, lvmthin, lvm, nfs, cifs, zfspool, rbd, cephfs, ...
	Content []string // images, rootdir, iso, vztmpl, backup, snippets, import
	Shared  bool
	Nodes   []string // empty: all nodes
	Total   int64    // bytes, per node for local storage
	Used    int64    // bytes used by things other than the volumes the Sim knows
	Path    string   // dir/nfs: mount path
}

// VM is a guest as seeded or inspected.
type VM struct {
	Node     string
	VMID     int
	Name     string
	Template bool
	Running  bool
	Lock     string            // config lock, e.g. "clone"
	Config   map[string]string // PVE config keys → values (property strings)
	Pending  map[string]string // pending values (running VM)
}

// Call is one API request the Sim answered.
type Call struct {
	Method string
	Path   string // relative to /api2/json, without the query
	Status int
}

// Sim is a Proxmox VE API simulator. All state is behind mu.
type Sim struct {
	opts   Options
	schema *apiSchema
	chk    *checker
	log    *slog.Logger
	now    func() time.Time
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	nodes      map[string]*simNode
	nodeOrder  []string
	storages   map[string]*Storage
	volumes    map[string]map[string]*volume // content key (storage or node/storage) → volid → volume
	vms        map[int]*simVM
	locks      map[int]chan struct{} // per-VM config file lock (flock)
	tasks      map[string]*task
	taskOrder  []string
	users      map[string]*user
	tokens     map[string]*token // full id user@realm!name
	tickets    map[string]string // ticket → userid
	passwords  map[string]string // userid → password for POST /access/ticket
	nextLower  int
	nextUpper  int
	calls      []Call
	failures   []taskFailure
	faults     []*Fault
	pidCounter int
	macCounter int
}

type simNode struct {
	name   string
	online bool
	skew   time.Duration
	boot   time.Time
	dir    string // stands for the node's root file system (SetNodeDir); "" for none
}

type volume struct {
	volid   string
	content string // images, rootdir, iso, vztmpl, import, snippets, backup
	format  string // raw, qcow2, iso, tzst, ...
	size    int64
	vmid    int
	ctime   int64
}

type simVM struct {
	node      string
	vmid      int
	conf      map[string]string
	pending   map[string]string
	pendDel   map[string]bool
	running   bool
	startedAt time.Time
}

type user struct {
	id  string
	acl map[string][]string
}

type token struct {
	id      string // user@realm!name
	user    string
	secret  string
	privsep bool
	acl     map[string][]string
}

type taskFailure struct {
	match func(typ, id string) bool
	msg   string
}

// New makes a Sim with no nodes, storages, VMs or users.
func New(opts Options) (*Sim, error) {
	schema, err := loadSchema()
	if err != nil {
		return nil, err
	}
	if opts.Version == "" {
		opts.Version = "9.1.1"
	}
	if opts.Cluster == "" {
		opts.Cluster = "pvesim"
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 10 * time.Second
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = 30 * time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 60 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sim{
		opts: opts, schema: schema, chk: newChecker(), log: log, now: opts.Now,
		ctx: ctx, cancel: cancel,
		nodes: map[string]*simNode{}, storages: map[string]*Storage{},
		volumes: map[string]map[string]*volume{}, vms: map[int]*simVM{},
		locks: map[int]chan struct{}{}, tasks: map[string]*task{},
		users: map[string]*user{}, tokens: map[string]*token{}, tickets: map[string]string{}, passwords: map[string]string{},
		nextLower: 100, nextUpper: 1000000,
		pidCounter: 4000 + int(randUint32()%20000),
	}
	if s.opts.Download == nil {
		s.opts.Download = s.loopbackDownload
	}
	return s, nil
}

// Close cancels running tasks and waits for them to end.
func (s *Sim) Close() {
	s.cancel()
	s.wg.Wait()
}

func randUint32() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// AddNode adds a cluster node (or changes its online state).
func (s *Sim) AddNode(name string, online bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.nodes[name]; ok {
		n.online = online
		return
	}
	s.nodes[name] = &simNode{name: name, online: online, boot: s.now().Add(-72 * time.Hour)}
	s.nodeOrder = append(s.nodeOrder, name)
	sort.Strings(s.nodeOrder)
}

// SetNodeOnline marks a node online or offline; requests proxied to an
// offline node fail like PVE's ("595 No route to host").
func (s *Sim) SetNodeOnline(name string, online bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.nodes[name]; ok {
		n.online = online
	}
}

// SetClockSkew makes a node's clock run d ahead (negative: behind).
func (s *Sim) SetClockSkew(node string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.nodes[node]; ok {
		n.skew = d
	}
}

// SetNextIDRange sets the datacenter next-id range (lower, upper).
func (s *Sim) SetNextIDRange(lower, upper int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextLower, s.nextUpper = lower, upper
}

// AddStorage defines a storage (replacing one with the same ID).
func (s *Sim) AddStorage(st Storage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st.Content = slices.Clone(st.Content)
	st.Nodes = slices.Clone(st.Nodes)
	s.storages[st.ID] = &st
}

// SetStorageContent changes a storage's content types.
func (s *Sim) SetStorageContent(id string, content []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.storages[id]; ok {
		st.Content = slices.Clone(content)
	}
}

// AddVolume puts a volume (e.g. "local:import/debian-12.qcow2",
// "local:iso/x.iso", "local-lvm:vm-100-disk-0") on a node's storage; size
// is the (virtual) size in bytes.
func (s *Sim) AddVolume(node, storage, volid string, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putVolume(node, storage, volid, size)
}

func (s *Sim) putVolume(node, storage, volid string, size int64) *volume {
	key := s.contentKey(node, storage)
	if s.volumes[key] == nil {
		s.volumes[key] = map[string]*volume{}
	}
	v := &volume{volid: volid, size: size, ctime: s.now().Unix()}
	v.content, v.format, v.vmid = classifyVolume(s.storages[storage], volid)
	s.volumes[key][volid] = v
	return v
}

// contentKey is where a storage's volumes live: one place for shared
// storage, one per node otherwise.
func (s *Sim) contentKey(node, storage string) string {
	if st := s.storages[storage]; st != nil && st.Shared {
		return storage
	}
	return node + "/" + storage
}

// classifyVolume derives content type, format and owner from a volid.
func classifyVolume(st *Storage, volid string) (content, format string, vmid int) {
	_, name, _ := strings.Cut(volid, ":")
	ext := func(n string) string {
		i := strings.LastIndex(n, ".")
		if i < 0 {
			return "raw"
		}
		switch e := n[i+1:]; e {
		case "gz", "zst", "xz", "bz2", "lzo":
			return "t" + e
		default:
			return e
		}
	}
	switch {
	case strings.HasPrefix(name, "iso/"):
		return "iso", "iso", 0
	case strings.HasPrefix(name, "import/"):
		return "import", ext(name), 0
	case strings.HasPrefix(name, "snippets/"):
		return "snippets", "snippet", 0
	case strings.HasPrefix(name, "vztmpl/"):
		return "vztmpl", ext(name), 0
	case strings.HasPrefix(name, "dump/"):
		return "backup", ext(name), 0
	}
	base := name
	if i := strings.LastIndex(base, "/"); i >= 0 {
		base = base[i+1:]
	}
	for _, prefix := range []string{"vm-", "base-"} {
		if rest, ok := strings.CutPrefix(base, prefix); ok {
			id, _, _ := strings.Cut(rest, "-")
			vmid, _ = strconv.Atoi(id)
		}
	}
	format = "raw"
	if strings.Contains(base, ".") {
		format = ext(base)
	}
	return "images", format, vmid
}

// AddVM adds a VM. Config holds PVE config keys (name, template, scsi0, ...);
// VM.Name and VM.Template override config's name and template.
func (s *Sim) AddVM(vm VM) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.nodes[vm.Node]; !ok {
		return fmt.Errorf("pvesim: add VM %d: no node %q", vm.VMID, vm.Node)
	}
	if old, ok := s.vms[vm.VMID]; ok {
		return fmt.Errorf("pvesim: add VM %d: VM %d already exists on node '%s'", vm.VMID, vm.VMID, old.node)
	}
	if vm.VMID < 100 || vm.VMID > 999999999 {
		return fmt.Errorf("pvesim: add VM %d: vmid out of range 100..999999999", vm.VMID)
	}
	conf := maps.Clone(vm.Config)
	if conf == nil {
		conf = map[string]string{}
	}
	if vm.Name != "" {
		conf["name"] = vm.Name
	}
	if vm.Template {
		conf["template"] = "1"
	}
	if vm.Lock != "" {
		conf["lock"] = vm.Lock
	}
	if _, ok := conf["vmgenid"]; !ok {
		conf["vmgenid"] = newUUID()
	}
	if _, ok := conf["smbios1"]; !ok {
		conf["smbios1"] = "uuid=" + newUUID()
	}
	s.vms[vm.VMID] = &simVM{node: vm.Node, vmid: vm.VMID, conf: conf, pending: map[string]string{},
		pendDel: map[string]bool{}, running: vm.Running, startedAt: s.now()}
	return nil
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// AddUser adds a user (user@realm) with ACLs: path → privileges
// (propagating to sub-paths; a deeper path replaces a shallower one).
func (s *Sim) AddUser(userid string, acl map[string][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[userid] = &user{id: userid, acl: cloneACL(acl)}
}

// SetPassword lets a user log in with POST /access/ticket.
func (s *Sim) SetPassword(userid, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.passwords[userid] = password
}

// AddToken adds an API token (user@realm!name) for an existing or new
// user. A privilege-separated token's permissions are the intersection of
// the user's and the token's ACLs; without privsep it has the user's.
func (s *Sim) AddToken(tokenID, secret string, privsep bool, acl map[string][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	userid, _, _ := strings.Cut(tokenID, "!")
	if _, ok := s.users[userid]; !ok {
		s.users[userid] = &user{id: userid, acl: map[string][]string{}}
	}
	s.tokens[tokenID] = &token{id: tokenID, user: userid, secret: secret, privsep: privsep, acl: cloneACL(acl)}
}

func cloneACL(acl map[string][]string) map[string][]string {
	out := make(map[string][]string, len(acl))
	for p, privs := range acl {
		out[p] = slices.Clone(privs)
	}
	return out
}

// FailNextTask makes the next task whose type and id match fail with msg
// (as its exitstatus) instead of doing its work.
func (s *Sim) FailNextTask(match func(typ, id string) bool, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, taskFailure{match: match, msg: msg})
}

// Fault is a failure of the API itself, as a loaded or unreachable PVE
// gives one: the next Times requests that Match answer Code with Msg
// (PVE's reason phrase) without being served, each first held for Hold
// (longer than a client's timeout: the client times out instead).
type Fault struct {
	Match func(method, path string) bool // path relative to /api2/json
	Code  int
	Msg   string
	Hold  time.Duration
	Times int
}

// AddFault arms a fault; the requests it takes are in Calls with its code.
func (s *Sim) AddFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// fault takes one request from the first armed fault that matches it.
func (s *Sim) fault(method, path string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.Times > 0 && f.Match(method, path) {
			f.Times--
			return f
		}
	}
	return nil
}

// VMs returns every VM, by VMID.
func (s *Sim) VMs() []VM {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := slices.Sorted(maps.Keys(s.vms))
	out := make([]VM, 0, len(ids))
	for _, id := range ids {
		out = append(out, s.vmView(s.vms[id]))
	}
	return out
}

// VM returns one VM.
func (s *Sim) VM(vmid int) (VM, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vms[vmid]
	if !ok {
		return VM{}, false
	}
	return s.vmView(v), true
}

func (s *Sim) vmView(v *simVM) VM {
	return VM{Node: v.node, VMID: v.vmid, Name: v.conf["name"], Template: v.conf["template"] == "1",
		Running: v.running, Lock: v.conf["lock"], Config: maps.Clone(v.conf), Pending: maps.Clone(v.pending)}
}

// Volumes lists the volids on a node's storage.
func (s *Sim) Volumes(node, storage string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.volumes[s.contentKey(node, storage)]))
}

// Calls returns the API calls answered so far.
func (s *Sim) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// ResetCalls forgets the recorded calls.
func (s *Sim) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
}
