package pvesim

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// qemuConfigSchema is the create method's parameters: the config keys a
// VM can have, with their property-string formats.
func (s *Sim) qemuConfigSchema() *objectSchema {
	n, _ := s.schema.match("/nodes/x/qemu")
	return n.methods["POST"].Parameters
}

// qemuFormat returns the property-string format of a config key, or nil.
func (s *Sim) qemuFormat(key string) map[string]*propSchema {
	p := s.qemuConfigSchema().lookup(key)
	if p == nil || p.Format == nil {
		return nil
	}
	if p.Format.Keys != nil {
		return p.Format.Keys
	}
	return hashFormats[p.Format.Name]
}

// parseProp parses a config value of key as a property string.
func (s *Sim) parseProp(key, v string) (map[string]string, error) {
	f := s.qemuFormat(key)
	if f == nil {
		return nil, fmt.Errorf("%s is not a property string", key)
	}
	m, msg := s.chk.parsePropertyString(f, v, key)
	if msg != "" {
		return nil, fmt.Errorf("%s", strings.TrimRight(msg, "\n"))
	}
	return m, nil
}

// printProp renders a property string like PVE's print_property_string:
// the default key's bare value first (or "model=mac" for a key alias such
// as net's "virtio=BC:24:11:..."), then the other keys sorted.
func (s *Sim) printProp(key string, data map[string]string) string {
	f := s.qemuFormat(key)
	var parts []string
	skip := map[string]bool{}
	for _, k := range slices.Sorted(maps.Keys(f)) {
		if !f[k].DefaultKey {
			continue
		}
		dv, ok := data[k]
		if !ok {
			break
		}
		skip[k] = true
		if a := f[dv]; a != nil && a.Alias != "" && a.KeyAlias == k && data[a.Alias] != "" {
			parts = append(parts, dv+"="+data[a.Alias])
			skip[a.Alias] = true
		} else {
			parts = append(parts, dv)
		}
		break
	}
	for _, k := range slices.Sorted(maps.Keys(data)) {
		if !skip[k] {
			parts = append(parts, k+"="+data[k])
		}
	}
	return strings.Join(parts, ",")
}

// typedValue returns a config value with the JSON type PVE gives it:
// numbers for integer, number and boolean keys, strings otherwise.
func (s *Sim) typedValue(key, v string) any {
	p := s.qemuConfigSchema().lookup(key)
	if p == nil {
		return v
	}
	switch p.Type {
	case "integer", "boolean":
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	case "number":
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return f
		}
	}
	return v
}

// loadVMLocked finds a VM on a node like PVE's load_config.
func (s *Sim) loadVMLocked(node string, vmid int) (*simVM, error) {
	v := s.vms[vmid]
	if v == nil || v.node != node {
		return nil, errf(http.StatusInternalServerError, "Configuration file 'nodes/%s/qemu-server/%d.conf' does not exist", node, vmid)
	}
	return v, nil
}

func checkConfLock(v *simVM) error {
	if l := v.conf["lock"]; l != "" {
		return errf(http.StatusInternalServerError, "VM is locked (%s)", l)
	}
	return nil
}

func (s *Sim) vmEvent(v *simVM) VMEvent {
	ev := VMEvent{Node: v.node, VMID: v.vmid, Name: v.conf["name"], Config: maps.Clone(v.conf)}
	ipc := v.conf["ipconfig0"]
	if ip := propValue(ipc, "ip"); ip != "" {
		if p, err := netip.ParsePrefix(ip); err == nil {
			ev.IP = p
		}
	}
	ev.Gateway = propValue(ipc, "gw")
	return ev
}

func (s *Sim) getQemuList(r *request) (any, error) {
	node := r.str("node")
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	for _, id := range slices.Sorted(maps.Keys(s.vms)) {
		v := s.vms[id]
		if v.node != node {
			continue
		}
		if !s.privsLocked(r.authID, fmt.Sprintf("/vms/%d", id))["VM.Audit"] && r.authID != "" {
			continue
		}
		e := s.vmResourceLocked(v)
		delete(e, "id")
		delete(e, "node")
		delete(e, "type")
		out = append(out, e)
	}
	return out, nil
}

// allocated is a volume created for a request, to undo on failure.
type allocated struct{ node, storage, volid string }

func (s *Sim) dropVolumesLocked(vols []allocated) {
	for _, a := range vols {
		delete(s.volumes[s.contentKey(a.node, a.storage)], a.volid)
	}
}

// nextDiskNameLocked picks vm-<vmid>-disk-<n> free on the storage; a
// linked clone's "base-X-disk-0/vm-Y-disk-0" takes the name after the slash.
func (s *Sim) nextDiskNameLocked(node, storage string, vmid int, format string) (string, string) {
	st := s.storages[storage]
	taken := map[string]bool{}
	for id := range s.volumes[s.contentKey(node, storage)] {
		_, name, _ := strings.Cut(id, ":")
		if i := strings.LastIndex(name, "/"); i >= 0 {
			name = name[i+1:]
		}
		name, _, _ = strings.Cut(name, ".")
		taken[name] = true
	}
	if fileBased(st.Type) && format == "" {
		format = "qcow2"
	} else if !fileBased(st.Type) {
		format = "raw"
	}
	for i := 0; ; i++ {
		name := fmt.Sprintf("vm-%d-disk-%d", vmid, i)
		if taken[name] || taken[fmt.Sprintf("base-%d-disk-%d", vmid, i)] {
			continue
		}
		if fileBased(st.Type) {
			return fmt.Sprintf("%s:%d/%s.%s", storage, vmid, name, format), format
		}
		return storage + ":" + name, format
	}
}

func cloudinitVolid(st *Storage, vmid int) string {
	if fileBased(st.Type) {
		return fmt.Sprintf("%s:%d/vm-%d-cloudinit.qcow2", st.ID, vmid, vmid)
	}
	return fmt.Sprintf("%s:vm-%d-cloudinit", st.ID, vmid)
}

// diskRequest is a drive option after parsing: what to allocate.
type diskRequest struct {
	slot    string
	drive   map[string]string
	storage string // allocation target
	sizeGiB float64
	kind    string // "alloc", "import", "cloudinit", "existing", "cdrom"
	source  *volume
}

// planDiskLocked checks one drive option of create/config like
// qemu-server's create_disks, without changing anything.
func (s *Sim) planDiskLocked(r *request, node, slot, value string, vmid int) (*diskRequest, error) {
	drive, err := s.parseProp(slot, value)
	if err != nil {
		return nil, paramErr1(slot, err.Error())
	}
	d := &diskRequest{slot: slot, drive: drive}
	file := drive["file"]
	if drive["media"] == "cdrom" || file == "none" || file == "cdrom" {
		d.kind = "cdrom"
		if file != "none" && file != "cdrom" && !strings.HasPrefix(file, "/") {
			storage, _, _ := strings.Cut(file, ":")
			if _, err := s.storageOnNodeLocked(node, storage); err != nil {
				return nil, err
			}
			if s.volumes[s.contentKey(node, storage)][file] == nil && !strings.HasSuffix(file, ":cloudinit") {
				return nil, errf(http.StatusInternalServerError, "volume '%s' does not exist", file)
			}
		}
		if !strings.HasSuffix(file, ":cloudinit") {
			return d, nil
		}
	}
	storage, rest, ok := strings.Cut(file, ":")
	if !ok {
		if strings.HasPrefix(file, "/") {
			d.kind = "existing"
			return d, nil
		}
		return nil, paramErr1(slot, "unable to parse drive options")
	}
	st, err := s.storageOnNodeLocked(node, storage)
	if err != nil {
		return nil, err
	}
	d.storage = storage
	switch {
	case rest == "cloudinit":
		d.kind = "cloudinit"
		if !slices.Contains(st.Content, "images") {
			return nil, errf(http.StatusInternalServerError, "storage '%s' does not support vm images", storage)
		}
	case reNumber.MatchString(rest):
		d.sizeGiB, _ = strconv.ParseFloat(rest, 64)
		if !slices.Contains(st.Content, "images") {
			return nil, errf(http.StatusInternalServerError, "storage '%s' does not support vm images", storage)
		}
		if src := drive["import-from"]; src != "" {
			if d.sizeGiB != 0 {
				return nil, paramErr1(slot, "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>")
			}
			srcStorage, _, _ := strings.Cut(src, ":")
			if _, err := s.storageOnNodeLocked(node, srcStorage); err != nil {
				return nil, err
			}
			vol := s.volumes[s.contentKey(node, srcStorage)][src]
			if vol == nil {
				return nil, errf(http.StatusInternalServerError, "volume %s does not exist", src)
			}
			if err := s.requirePrivUnlocked(r, "/storage/"+srcStorage, "Datastore.Audit"); err != nil {
				return nil, err
			}
			d.kind, d.source = "import", vol
		} else {
			if d.sizeGiB <= 0 {
				return nil, paramErr1(slot, "size must be greater than 0")
			}
			d.kind = "alloc"
		}
	default:
		vol := s.volumes[s.contentKey(node, storage)][file]
		if vol == nil {
			return nil, errf(http.StatusInternalServerError, "volume '%s' does not exist", file)
		}
		d.kind, d.source = "existing", vol
		return d, nil
	}
	if err := s.requirePrivUnlocked(r, "/storage/"+storage, "Datastore.AllocateSpace"); err != nil {
		return nil, err
	}
	return d, nil
}

// requirePrivUnlocked is requirePriv for callers already holding s.mu.
func (s *Sim) requirePrivUnlocked(r *request, path string, privs ...string) error {
	if r.authID == "" {
		return nil
	}
	have := s.privsLocked(r.authID, path)
	for _, p := range privs {
		if !have[p] {
			return errf(http.StatusForbidden, "Permission check failed (%s, %s)", path, p)
		}
	}
	return nil
}

// applyDiskLocked allocates what a planned drive needs and returns the
// config value (file replaced by the volume, size set).
func (s *Sim) applyDiskLocked(d *diskRequest, node string, vmid int, template bool, vols *[]allocated) string {
	drive := maps.Clone(d.drive)
	switch d.kind {
	case "cloudinit":
		st := s.storages[d.storage]
		volid := cloudinitVolid(st, vmid)
		s.putVolume(node, d.storage, volid, 4<<20)
		*vols = append(*vols, allocated{node, d.storage, volid})
		drive["file"] = volid
		drive["media"] = "cdrom"
		delete(drive, "size")
	case "alloc", "import":
		size := int64(d.sizeGiB * (1 << 30))
		if d.kind == "import" {
			size = d.source.size
		}
		volid, format := s.nextDiskNameLocked(node, d.storage, vmid, drive["format"])
		if template {
			volid = strings.Replace(volid, fmt.Sprintf("vm-%d-disk", vmid), fmt.Sprintf("base-%d-disk", vmid), 1)
		}
		s.putVolume(node, d.storage, volid, size)
		*vols = append(*vols, allocated{node, d.storage, volid})
		drive["file"] = volid
		delete(drive, "import-from")
		if fileBased(s.storages[d.storage].Type) {
			drive["format"] = format
		} else {
			delete(drive, "format")
		}
		drive["size"] = formatSize(size)
	case "existing":
		if d.source != nil && drive["size"] == "" {
			drive["size"] = formatSize(d.source.size)
		}
	}
	return s.printProp(d.slot, drive)
}

// newMAC is PVE's random_ether_addr with Proxmox's BC:24:11 prefix.
func newMAC() string {
	b := randUint32()
	return fmt.Sprintf("BC:24:11:%02X:%02X:%02X", byte(b>>16), byte(b>>8), byte(b))
}

// normaliseNetLocked assigns a MAC to a net option without one.
func (s *Sim) normaliseNet(key, value string) (string, error) {
	net, err := s.parseProp(key, value)
	if err != nil {
		return "", paramErr1(key, err.Error())
	}
	if net["macaddr"] == "" {
		net["macaddr"] = newMAC()
	}
	return s.printProp(key, net), nil
}

// configKeys lists the config options in a request (not node, vmid, ...).
var nonConfigParams = map[string]bool{
	"node": true, "vmid": true, "delete": true, "digest": true, "revert": true, "skiplock": true,
	"force": true, "background_delay": true, "start": true, "pool": true, "storage": true,
	"archive": true, "unique": true, "live-restore": true, "bwlimit": true, "import-working-storage": true,
	"ha-managed": true,
}

func (s *Sim) postQemuCreate(r *request) (any, error) {
	node, vmid := r.str("node"), r.int("vmid")
	if r.has("archive") {
		return nil, errf(http.StatusNotImplemented, "pvesim does not implement restoring from an archive")
	}
	if err := s.requirePriv(r, fmt.Sprintf("/vms/%d", vmid), "VM.Allocate"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if old, ok := s.vms[vmid]; ok {
		s.mu.Unlock()
		return nil, errf(http.StatusInternalServerError, "unable to create VM %d - VM %d already exists on node '%s'", vmid, vmid, old.node)
	}
	conf := map[string]string{}
	var disks []*diskRequest
	template := r.bool("template")
	for _, k := range slices.Sorted(maps.Keys(r.p)) {
		v, ok := r.p.get(k)
		if nonConfigParams[k] || !ok {
			continue
		}
		switch {
		case isDiskSlot(k):
			d, err := s.planDiskLocked(r, node, k, v, vmid)
			if err != nil {
				s.mu.Unlock()
				return nil, err
			}
			disks = append(disks, d)
		case strings.HasPrefix(k, "net") && s.qemuFormat(k) != nil:
			nv, err := s.normaliseNet(k, v)
			if err != nil {
				s.mu.Unlock()
				return nil, err
			}
			conf[k] = nv
		default:
			conf[k] = v
		}
	}
	conf["vmgenid"] = newUUID()
	conf["smbios1"] = "uuid=" + newUUID()
	conf["meta"] = fmt.Sprintf("creation-qemu=10.1.2,ctime=%d", s.now().Unix())
	conf["lock"] = "create"
	delete(conf, "template")
	v := &simVM{node: node, vmid: vmid, conf: conf, pending: map[string]string{}, pendDel: map[string]bool{}}
	s.vms[vmid] = v
	s.mu.Unlock()

	release, err := s.acquireLock(r.ctx, vmid)
	if err != nil {
		s.mu.Lock()
		delete(s.vms, vmid)
		s.mu.Unlock()
		return nil, err
	}
	var vols []allocated
	start := r.bool("start")
	return s.startTask(taskSpec{node: node, typ: "qmcreate", id: strconv.Itoa(vmid), user: r.authID,
		run: func(ctx context.Context, t *task) error {
			s.mu.Lock()
			for _, d := range disks {
				v.conf[d.slot] = s.applyDiskLocked(d, node, vmid, template, &vols)
				if d.kind == "import" {
					t.logf("importing disk '%s' to VM %d ...", d.source.volid, vmid)
				}
				t.logf("%s: successfully created disk '%s'", d.slot, v.conf[d.slot])
			}
			if template {
				v.conf["template"] = "1"
			}
			delete(v.conf, "lock")
			ev := s.vmEvent(v)
			s.mu.Unlock()
			if start && !template {
				return s.startVM(ctx, v, ev)
			}
			return nil
		},
		onFail: func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.dropVolumesLocked(vols)
			delete(s.vms, vmid)
		},
		release: release,
	}), nil
}

func (s *Sim) postQemuTemplate(r *request) (any, error) {
	node, vmid := r.str("node"), r.int("vmid")
	check := func() (*simVM, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		v, err := s.loadVMLocked(node, vmid)
		if err != nil {
			return nil, err
		}
		if err := checkConfLock(v); err != nil {
			return nil, err
		}
		if v.conf["template"] == "1" && !r.has("disk") {
			return nil, errf(http.StatusInternalServerError, "you can't convert a template to a template")
		}
		if v.running {
			return nil, errf(http.StatusInternalServerError, "you can't convert a VM to template if VM is running")
		}
		return v, nil
	}
	if _, err := check(); err != nil {
		return nil, err
	}
	return s.vmTask(r, node, vmid, "qmtemplate", func(ctx context.Context, t *task) error {
		v, err := check()
		if err != nil {
			return err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		v.conf["template"] = "1"
		for _, slot := range diskSlots() {
			val, ok := v.conf[slot]
			if !ok || (r.has("disk") && r.str("disk") != slot) {
				continue
			}
			drive, err := s.parseProp(slot, val)
			if err != nil || drive["media"] == "cdrom" {
				continue
			}
			old := drive["file"]
			nv := strings.Replace(old, fmt.Sprintf("vm-%d-disk", vmid), fmt.Sprintf("base-%d-disk", vmid), 1)
			if nv == old {
				continue
			}
			storage, _, _ := strings.Cut(old, ":")
			vols := s.volumes[s.contentKey(node, storage)]
			if vol := vols[old]; vol != nil {
				delete(vols, old)
				vol.volid = nv
				vols[nv] = vol
			}
			drive["file"] = nv
			v.conf[slot] = s.printProp(slot, drive)
			t.logf("%s: converted %s to base volume %s", slot, old, nv)
		}
		return nil
	})
}

func (s *Sim) postQemuClone(r *request) (any, error) {
	node, vmid, newid := r.str("node"), r.int("vmid"), r.int("newid")
	target := r.str("target")
	if target == node {
		target = ""
	}
	s.mu.Lock()
	if target != "" && s.nodes[target] == nil {
		s.mu.Unlock()
		return nil, errf(http.StatusInternalServerError, "no such cluster node '%s'", target)
	}
	if r.has("pool") {
		s.mu.Unlock()
		return nil, errf(http.StatusInternalServerError, "pool '%s' does not exist", r.str("pool"))
	}
	src, err := s.loadVMLocked(node, vmid)
	if err == nil {
		err = checkConfLock(src)
	}
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	isTemplate := src.conf["template"] == "1"
	full := !isTemplate
	if r.has("full") {
		full = r.bool("full")
	}
	if !full && (r.has("storage") || r.has("format")) {
		s.mu.Unlock()
		if r.has("storage") {
			return nil, errf(http.StatusInternalServerError, "parameter 'storage' not allowed for linked clones")
		}
		return nil, errf(http.StatusInternalServerError, "parameter 'format' not allowed for linked clones")
	}
	if !full && !isTemplate {
		s.mu.Unlock()
		return nil, errf(http.StatusInternalServerError, "Linked clone feature is not supported for drive 'scsi0'")
	}
	targetStorage := r.str("storage")
	if targetStorage != "" {
		st, err := s.storageOnNodeLocked(node, targetStorage)
		if err == nil && !slices.Contains(st.Content, "images") {
			err = paramErr1("storage", fmt.Sprintf("storage '%s' does not support vm images", targetStorage))
		}
		if err == nil && target != "" && !st.Shared {
			err = errf(http.StatusInternalServerError, "can't clone to non-shared storage '%s'", targetStorage)
		}
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
	}
	shared := true
	type diskCopy struct {
		slot, storage string
		drive         map[string]string
		src           *volume
		cloudinit     bool
	}
	var copies []diskCopy
	for _, slot := range diskSlots() {
		val, ok := src.conf[slot]
		if !ok {
			continue
		}
		drive, err := s.parseProp(slot, val)
		if err != nil {
			continue
		}
		file := drive["file"]
		storage, _, _ := strings.Cut(file, ":")
		ci := strings.Contains(file, "-cloudinit")
		if drive["media"] == "cdrom" && !ci {
			continue
		}
		if st := s.storages[storage]; st != nil && !st.Shared {
			shared = false
		}
		dst := storage
		if targetStorage != "" {
			dst = targetStorage
		}
		copies = append(copies, diskCopy{slot: slot, storage: dst, drive: drive, cloudinit: ci,
			src: s.volumes[s.contentKey(node, storage)][file]})
	}
	if target != "" && !shared && targetStorage == "" {
		s.mu.Unlock()
		return nil, errf(http.StatusInternalServerError, "can't clone VM to node '%s' (VM uses local storage)", target)
	}
	if old, ok := s.vms[newid]; ok {
		s.mu.Unlock()
		_ = old
		return nil, errf(http.StatusInternalServerError, "unable to create VM %d: config file already exists", newid)
	}
	newconf := map[string]string{"lock": "clone"}
	for k, v := range src.conf {
		if k == "template" || k == "lock" || strings.HasPrefix(k, "unused") || isDiskSlot(k) ||
			k == "vmgenid" || k == "smbios1" || k == "meta" {
			continue
		}
		if strings.HasPrefix(k, "net") {
			if net, err := s.parseProp(k, v); err == nil {
				net["macaddr"] = newMAC()
				v = s.printProp(k, net)
			}
		}
		newconf[k] = v
	}
	if r.has("name") {
		newconf["name"] = r.str("name")
	} else {
		name := src.conf["name"]
		if name == "" {
			name = strconv.Itoa(vmid)
		}
		newconf["name"] = "Copy-of-VM-" + name
	}
	if r.has("description") {
		newconf["description"] = r.str("description")
	}
	newconf["vmgenid"] = newUUID()
	newconf["smbios1"] = "uuid=" + newUUID()
	// The temporary config lives on the source node during the copy.
	nv := &simVM{node: node, vmid: newid, conf: newconf, pending: map[string]string{}, pendDel: map[string]bool{}}
	s.vms[newid] = nv
	s.mu.Unlock()

	release, err := s.acquireLock(r.ctx, newid)
	if err != nil {
		s.mu.Lock()
		delete(s.vms, newid)
		s.mu.Unlock()
		return nil, err
	}
	finalNode := node
	if target != "" {
		finalNode = target
	}
	var vols []allocated
	return s.startTask(taskSpec{node: node, typ: "qmclone", id: strconv.Itoa(vmid), user: r.authID,
		release: release,
		run: func(ctx context.Context, t *task) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			for _, c := range copies {
				drive := maps.Clone(c.drive)
				switch {
				case c.cloudinit:
					st := s.storages[c.storage]
					volid := cloudinitVolid(st, newid)
					s.putVolume(finalNode, c.storage, volid, 4<<20)
					vols = append(vols, allocated{finalNode, c.storage, volid})
					drive["file"] = volid
				case !full:
					base := c.drive["file"]
					_, baseName, _ := strings.Cut(base, ":")
					volid, _ := s.nextDiskNameLocked(finalNode, c.storage, newid, "")
					_, name, _ := strings.Cut(volid, ":")
					linked := c.storage + ":" + baseName + "/" + name
					size := parseSize(c.drive["size"])
					if c.src != nil {
						size = c.src.size
					}
					s.putVolume(finalNode, c.storage, linked, size)
					vols = append(vols, allocated{finalNode, c.storage, linked})
					drive["file"] = linked
					t.logf("create linked clone of drive %s (%s)", c.slot, base)
				default:
					t.logf("create full clone of drive %s (%s)", c.slot, c.drive["file"])
					size := parseSize(c.drive["size"])
					if c.src != nil {
						size = c.src.size
					}
					format := ""
					if fileBased(s.storages[c.storage].Type) {
						format = c.drive["format"]
						if r.has("format") {
							format = r.str("format")
						}
					}
					volid, f := s.nextDiskNameLocked(finalNode, c.storage, newid, format)
					s.putVolume(finalNode, c.storage, volid, size)
					vols = append(vols, allocated{finalNode, c.storage, volid})
					drive["file"] = volid
					if fileBased(s.storages[c.storage].Type) {
						drive["format"] = f
					}
				}
				nv.conf[c.slot] = s.printProp(c.slot, drive)
			}
			delete(nv.conf, "lock")
			nv.node = finalNode
			return nil
		},
		onFail: func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.dropVolumesLocked(vols)
			if cur := s.vms[newid]; cur == nv {
				delete(s.vms, newid)
			}
		},
	}), nil
}

// configView is a VM's config with pending changes applied (current=false).
func (s *Sim) configView(v *simVM, current bool) map[string]string {
	conf := maps.Clone(v.conf)
	if !current {
		maps.Copy(conf, v.pending)
		for k := range v.pendDel {
			delete(conf, k)
		}
	}
	return conf
}

func configDigest(conf map[string]string) string {
	h := sha1.New()
	for _, k := range slices.Sorted(maps.Keys(conf)) {
		fmt.Fprintf(h, "%s: %s\n", k, conf[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Sim) getQemuConfig(r *request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.loadVMLocked(r.str("node"), r.int("vmid"))
	if err != nil {
		return nil, err
	}
	out := map[string]any{"digest": configDigest(v.conf)}
	for k, val := range s.configView(v, r.bool("current")) {
		out[k] = s.typedValue(k, val)
	}
	return out, nil
}

func (s *Sim) getQemuPending(r *request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.loadVMLocked(r.str("node"), r.int("vmid"))
	if err != nil {
		return nil, err
	}
	keys := map[string]bool{}
	for k := range v.conf {
		keys[k] = true
	}
	for k := range v.pending {
		keys[k] = true
	}
	for k := range v.pendDel {
		keys[k] = true
	}
	out := []map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		e := map[string]any{"key": k}
		if val, ok := v.conf[k]; ok {
			e["value"] = s.typedValue(k, val)
		}
		if val, ok := v.pending[k]; ok {
			e["pending"] = s.typedValue(k, val)
		}
		if v.pendDel[k] {
			e["delete"] = 1
		}
		out = append(out, e)
	}
	return out, nil
}

func (s *Sim) putQemuConfig(r *request) (any, error) {
	release, err := s.acquireLock(r.ctx, r.int("vmid"))
	if err != nil {
		return nil, err
	}
	defer release()
	return nil, s.updateConfig(r, nil)
}

func (s *Sim) postQemuConfig(r *request) (any, error) {
	s.mu.Lock()
	_, err := s.loadVMLocked(r.str("node"), r.int("vmid"))
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	release, err := s.acquireLock(r.ctx, r.int("vmid"))
	if err != nil {
		return nil, err
	}
	var upErr error
	upid := s.startTask(taskSpec{node: r.str("node"), typ: "qmconfig", id: r.str("vmid"), user: r.authID,
		release: release,
		run: func(ctx context.Context, t *task) error {
			upErr = s.updateConfig(r, t)
			return upErr
		}})
	return upid, nil
}

// fastPlug are options PVE applies at once even on a running VM.
var fastPlug = map[string]bool{"name": true, "description": true, "onboot": true, "protection": true,
	"tags": true, "startup": true, "hookscript": true, "lock": true}

// configPriv is the privilege qemu-server's check_vm_modify_config_perm
// asks for an option.
func configPriv(key, value string) string {
	switch {
	case isDiskSlot(key) || strings.HasPrefix(key, "unused"):
		if strings.Contains(value, "media=cdrom") && !strings.Contains(value, "cloudinit") {
			return "VM.Config.CDROM"
		}
		return "VM.Config.Disk"
	case strings.HasPrefix(key, "net"):
		return "VM.Config.Network"
	case strings.HasPrefix(key, "ipconfig"), key == "ciuser", key == "cipassword", key == "cicustom",
		key == "citype", key == "ciupgrade", key == "nameserver", key == "searchdomain", key == "sshkeys":
		return "VM.Config.Cloudinit"
	}
	switch key {
	case "cores", "sockets", "cpu", "cpulimit", "cpuunits", "vcpus", "numa", "affinity":
		return "VM.Config.CPU"
	case "memory", "balloon", "shares":
		return "VM.Config.Memory"
	case "scsihw", "bios", "vga", "machine", "kvm", "acpi", "tablet", "hotplug", "localtime", "keyboard",
		"watchdog", "audio0", "rng0", "efidisk0", "tpmstate0":
		return "VM.Config.HWType"
	}
	if strings.HasPrefix(key, "serial") || strings.HasPrefix(key, "usb") || strings.HasPrefix(key, "parallel") ||
		strings.HasPrefix(key, "hostpci") {
		return "VM.Config.HWType"
	}
	return "VM.Config.Options"
}

// updateConfig is qemu-server's update_vm_api for PUT (sync) and POST.
func (s *Sim) updateConfig(r *request, t *task) error {
	node, vmid := r.str("node"), r.int("vmid")
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.loadVMLocked(node, vmid)
	if err != nil {
		return err
	}
	if !r.bool("skiplock") {
		if err := checkConfLock(v); err != nil {
			return err
		}
	} else if r.userID != "root@pam" || strings.Contains(r.authID, "!") {
		return paramErr1("skiplock", "Only root may use this option.")
	}
	if d := r.str("digest"); d != "" && d != configDigest(v.conf) {
		return errf(http.StatusInternalServerError, "detected modified configuration - file changed by other user? Try again.")
	}
	del := splitList(r.str("delete"))
	for _, k := range del {
		if r.has(k) {
			return paramErr1("delete", fmt.Sprintf("you can't use '-%s' and -delete %s' at the same time", k, k))
		}
		if !reConfigID.MatchString(k) || s.qemuConfigSchema().lookup(k) == nil && !strings.HasPrefix(k, "unused") {
			return paramErr1("delete", fmt.Sprintf("invalid configuration ID '%s'", k))
		}
	}
	sets := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(r.p)) {
		val, ok := r.p.get(k)
		if nonConfigParams[k] || !ok {
			continue
		}
		sets[k] = val
	}
	for _, k := range slices.Concat(del, slices.Sorted(maps.Keys(sets))) {
		if err := s.requirePrivUnlocked(r, fmt.Sprintf("/vms/%d", vmid), configPriv(k, sets[k]+v.conf[k])); err != nil {
			return err
		}
	}
	if v.conf["template"] == "1" {
		for k := range sets {
			if isDiskSlot(k) && !strings.Contains(sets[k], "cloudinit") && !strings.Contains(sets[k], "media=cdrom") {
				if cur := propFile(v.conf[k]); cur == "" || cur != propFile(sets[k]) {
					return errf(http.StatusInternalServerError, "you can't add/modify disks of a template")
				}
			}
		}
	}
	// Plan every drive before changing anything.
	plans := map[string]*diskRequest{}
	for k, val := range sets {
		if !isDiskSlot(k) {
			continue
		}
		if cur, ok := v.conf[k]; ok && propFile(cur) == propFile(val) {
			continue // same volume, options changed
		}
		d, err := s.planDiskLocked(r, node, k, val, vmid)
		if err != nil {
			return err
		}
		plans[k] = d
	}
	for k, val := range sets {
		if strings.HasPrefix(k, "net") && s.qemuFormat(k) != nil {
			nv, err := s.normaliseNet(k, val)
			if err != nil {
				return err
			}
			sets[k] = nv
		}
	}
	// Deletions.
	for _, k := range del {
		if _, ok := v.conf[k]; !ok {
			if _, ok := v.pending[k]; ok {
				delete(v.pending, k)
			}
			continue
		}
		if v.running && !fastPlug[k] && !isDiskSlot(k) && !strings.HasPrefix(k, "net") {
			v.pendDel[k] = true
			continue
		}
		s.removeOptionLocked(v, k)
	}
	// Sets.
	var vols []allocated
	for _, k := range slices.Sorted(maps.Keys(sets)) {
		val := sets[k]
		if d := plans[k]; d != nil {
			if old, ok := v.conf[k]; ok {
				s.removeOptionLocked(v, k) // the old disk becomes unusedN (cloud-init drives are freed)
				_ = old
			}
			val = s.applyDiskLocked(d, node, vmid, false, &vols)
			if t != nil {
				t.logf("%s: %s", k, val)
			}
		} else if isDiskSlot(k) {
			// same volume: keep PVE's size if the request omits it
			if drive, err := s.parseProp(k, val); err == nil {
				if drive["size"] == "" {
					if cur, err := s.parseProp(k, v.conf[k]); err == nil && cur["size"] != "" {
						drive["size"] = cur["size"]
					}
				}
				val = s.printProp(k, drive)
			}
		}
		if v.running && !fastPlug[k] && !isDiskSlot(k) && !strings.HasPrefix(k, "net") {
			if v.conf[k] != val {
				v.pending[k] = val
			}
			delete(v.pendDel, k)
			continue
		}
		v.conf[k] = val
		delete(v.pending, k)
		delete(v.pendDel, k)
	}
	if r.has("revert") {
		for _, k := range splitList(r.str("revert")) {
			delete(v.pending, k)
			delete(v.pendDel, k)
		}
	}
	return nil
}

// propFile is a drive's volume (the property string's first field).
func propFile(v string) string {
	f, _, _ := strings.Cut(v, ",")
	if strings.HasPrefix(f, "file=") {
		return f[5:]
	}
	return f
}

// removeOptionLocked deletes an option; a data disk becomes unusedN, a
// cloud-init drive's volume is freed.
func (s *Sim) removeOptionLocked(v *simVM, k string) {
	val := v.conf[k]
	delete(v.conf, k)
	delete(v.pending, k)
	delete(v.pendDel, k)
	if !isDiskSlot(k) {
		return
	}
	file := propFile(val)
	storage, _, ok := strings.Cut(file, ":")
	if !ok {
		return
	}
	if strings.Contains(file, "-cloudinit") {
		delete(s.volumes[s.contentKey(v.node, storage)], file)
		return
	}
	if strings.Contains(val, "media=cdrom") {
		return
	}
	for i := 0; ; i++ {
		key := fmt.Sprintf("unused%d", i)
		if _, used := v.conf[key]; !used {
			v.conf[key] = file
			return
		}
	}
}

func (s *Sim) putQemuResize(r *request) (any, error) {
	node, vmid, disk, sizeArg := r.str("node"), r.int("vmid"), r.str("disk"), r.str("size")
	s.mu.Lock()
	v, err := s.loadVMLocked(node, vmid)
	if err == nil && !r.bool("skiplock") {
		err = checkConfLock(v)
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return s.vmTask(r, node, vmid, "resize", func(ctx context.Context, t *task) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		val, ok := v.conf[disk]
		if !ok {
			return fmt.Errorf("disk '%s' does not exist", disk)
		}
		drive, err := s.parseProp(disk, val)
		if err != nil {
			return err
		}
		if drive["media"] == "cdrom" {
			return fmt.Errorf("you can't resize a cdrom")
		}
		storage, _, _ := strings.Cut(drive["file"], ":")
		vol := s.volumes[s.contentKey(node, storage)][drive["file"]]
		size := parseSize(drive["size"])
		if vol != nil {
			size = vol.size
		}
		var newSize int64
		if rest, ok := strings.CutPrefix(sizeArg, "+"); ok {
			newSize = size + parseSize(rest)
		} else {
			newSize = parseSize(sizeArg)
		}
		if newSize < 0 {
			return fmt.Errorf("invalid size '%s'", sizeArg)
		}
		if newSize < size {
			return fmt.Errorf("shrinking disks is not supported")
		}
		if newSize == size {
			t.logf("size unchanged")
			return nil
		}
		if vol != nil {
			vol.size = newSize
		}
		drive["size"] = formatSize(newSize)
		v.conf[disk] = s.printProp(disk, drive)
		t.logf("resized %s to %s", disk, drive["size"])
		return nil
	})
}

func (s *Sim) postQemuMoveDisk(r *request) (any, error) {
	node, vmid, disk, storage := r.str("node"), r.int("vmid"), r.str("disk"), r.str("storage")
	if storage == "" {
		return nil, paramErr1("storage", "property is missing and it is not optional")
	}
	s.mu.Lock()
	v, err := s.loadVMLocked(node, vmid)
	var drive map[string]string
	if err == nil {
		err = checkConfLock(v)
	}
	if err == nil {
		val, ok := v.conf[disk]
		if !ok {
			err = errf(http.StatusInternalServerError, "disk '%s' does not exist", disk)
		} else if drive, err = s.parseProp(disk, val); err == nil && drive["media"] == "cdrom" {
			err = errf(http.StatusInternalServerError, "you can't move a cdrom")
		}
	}
	var st *Storage
	if err == nil {
		st, err = s.storageOnNodeLocked(node, storage)
	}
	if err == nil {
		srcStorage, _, _ := strings.Cut(drive["file"], ":")
		srcFormat := "raw"
		if vol := s.volumes[s.contentKey(node, srcStorage)][drive["file"]]; vol != nil {
			srcFormat = vol.format
		}
		format := r.str("format")
		if format == "" || !fileBased(st.Type) {
			format = srcFormat
			if !fileBased(st.Type) {
				format = "raw"
			}
		}
		if srcStorage == storage && format == srcFormat {
			err = errf(http.StatusInternalServerError, "you can't move to the same storage with same format")
		}
	}
	if err == nil {
		err = s.requirePrivUnlocked(r, "/storage/"+storage, "Datastore.AllocateSpace")
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return s.vmTask(r, node, vmid, "qmmove", func(ctx context.Context, t *task) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		old := drive["file"]
		srcStorage, _, _ := strings.Cut(old, ":")
		vol := s.volumes[s.contentKey(node, srcStorage)][old]
		size := parseSize(drive["size"])
		if vol != nil {
			size = vol.size
		}
		format := ""
		if fileBased(st.Type) {
			format = r.str("format")
		}
		volid, f := s.nextDiskNameLocked(node, storage, vmid, format)
		s.putVolume(node, storage, volid, size)
		nd := maps.Clone(drive)
		nd["file"] = volid
		if fileBased(st.Type) {
			nd["format"] = f
		} else {
			delete(nd, "format")
		}
		v.conf[disk] = s.printProp(disk, nd)
		t.logf("moving disk '%s' to '%s'", old, volid)
		if r.bool("delete") {
			delete(s.volumes[s.contentKey(node, srcStorage)], old)
		} else {
			for i := 0; ; i++ {
				key := fmt.Sprintf("unused%d", i)
				if _, used := v.conf[key]; !used {
					v.conf[key] = old
					break
				}
			}
		}
		return nil
	})
}

func (s *Sim) getQemuStatus(r *request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.loadVMLocked(r.str("node"), r.int("vmid"))
	if err != nil {
		return nil, err
	}
	res := s.vmResourceLocked(v)
	cores, _ := res["maxcpu"].(int)
	out := map[string]any{"vmid": v.vmid, "name": v.conf["name"], "status": res["status"], "qmpstatus": res["status"],
		"uptime": res["uptime"], "cpus": cores, "maxmem": res["maxmem"], "mem": res["mem"], "maxdisk": res["maxdisk"],
		"disk": 0, "cpu": 0, "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0, "ha": map[string]any{"managed": 0}}
	if propValue(","+v.conf["agent"], "enabled") == "1" || strings.HasPrefix(v.conf["agent"], "1") {
		out["agent"] = 1
	}
	if v.running {
		out["pid"] = 100000 + v.vmid
		out["running-machine"] = "pc-i440fx-10.1+pve0"
		out["running-qemu"] = "10.1.2"
	}
	if l := v.conf["lock"]; l != "" {
		out["lock"] = l
	}
	if tags := v.conf["tags"]; tags != "" {
		out["tags"] = tags
	}
	if v.conf["template"] == "1" {
		out["template"] = 1
	}
	return out, nil
}

// powerOp runs start/stop/shutdown/reboot: checks, the VM's lock, a task.
func (s *Sim) powerOp(r *request, typ string, work func(ctx context.Context, v *simVM, t *task) error) (any, error) {
	node, vmid := r.str("node"), r.int("vmid")
	s.mu.Lock()
	v, err := s.loadVMLocked(node, vmid)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if r.bool("skiplock") && (r.userID != "root@pam" || strings.Contains(r.authID, "!")) {
		return nil, paramErr1("skiplock", "Only root may use this option.")
	}
	return s.vmTask(r, node, vmid, typ, func(ctx context.Context, t *task) error {
		if !r.bool("skiplock") {
			s.mu.Lock()
			err := checkConfLock(v)
			s.mu.Unlock()
			if err != nil {
				return err
			}
		}
		return work(ctx, v, t)
	})
}

// startVM marks a VM running after the OnStart hook agreed.
func (s *Sim) startVM(ctx context.Context, v *simVM, ev VMEvent) error {
	if s.opts.OnStart != nil {
		if err := s.opts.OnStart(ctx, ev); err != nil {
			return fmt.Errorf("start failed: %v", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v.running = true
	v.startedAt = s.now()
	// pending changes are applied at start
	maps.Copy(v.conf, v.pending)
	for k := range v.pendDel {
		delete(v.conf, k)
	}
	v.pending, v.pendDel = map[string]string{}, map[string]bool{}
	return nil
}

func (s *Sim) stopVM(ctx context.Context, v *simVM) error {
	s.mu.Lock()
	ev := s.vmEvent(v)
	s.mu.Unlock()
	if s.opts.OnStop != nil {
		if err := s.opts.OnStop(ctx, ev); err != nil {
			return fmt.Errorf("stop failed: %v", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v.running = false
	return nil
}

func (s *Sim) postQemuStart(r *request) (any, error) {
	return s.powerOp(r, "qmstart", func(ctx context.Context, v *simVM, t *task) error {
		s.mu.Lock()
		if v.conf["template"] == "1" {
			s.mu.Unlock()
			return fmt.Errorf("you can't start a vm if it's a template")
		}
		if v.running {
			s.mu.Unlock()
			return fmt.Errorf("VM %d already running", v.vmid)
		}
		ev := s.vmEvent(v)
		s.mu.Unlock()
		return s.startVM(ctx, v, ev)
	})
}

func (s *Sim) postQemuStop(r *request) (any, error) {
	return s.powerOp(r, "qmstop", func(ctx context.Context, v *simVM, t *task) error {
		s.mu.Lock()
		running := v.running
		s.mu.Unlock()
		if !running {
			return nil // vm_stop of a stopped VM succeeds
		}
		return s.stopVM(ctx, v)
	})
}

func (s *Sim) postQemuShutdown(r *request) (any, error) {
	return s.powerOp(r, "qmshutdown", func(ctx context.Context, v *simVM, t *task) error {
		s.mu.Lock()
		running := v.running
		s.mu.Unlock()
		if !running {
			return fmt.Errorf("VM %d not running", v.vmid)
		}
		return s.stopVM(ctx, v)
	})
}

func (s *Sim) postQemuReboot(r *request) (any, error) {
	return s.powerOp(r, "qmreboot", func(ctx context.Context, v *simVM, t *task) error {
		s.mu.Lock()
		running := v.running
		s.mu.Unlock()
		if !running {
			return fmt.Errorf("VM %d not running", v.vmid)
		}
		if err := s.stopVM(ctx, v); err != nil {
			return err
		}
		s.mu.Lock()
		ev := s.vmEvent(v)
		s.mu.Unlock()
		return s.startVM(ctx, v, ev)
	})
}

func (s *Sim) getAgentInterfaces(r *request) (any, error) {
	s.mu.Lock()
	v, err := s.loadVMLocked(r.str("node"), r.int("vmid"))
	var ev VMEvent
	var running, agent bool
	if err == nil {
		agentOpt := v.conf["agent"]
		agent = agentOpt == "1" || strings.HasPrefix(agentOpt, "1,") || propValue(agentOpt, "enabled") == "1"
		running = v.running
		ev = s.vmEvent(v)
	}
	s.mu.Unlock()
	switch {
	case err != nil:
		return nil, err
	case !agent:
		return nil, errf(http.StatusInternalServerError, "No QEMU guest agent configured")
	case !running:
		return nil, errf(http.StatusInternalServerError, "VM %d is not running", r.int("vmid"))
	case s.opts.Agent == nil:
		return nil, errf(http.StatusInternalServerError, "QEMU guest agent is not running")
	}
	ifaces, err := s.opts.Agent(r.ctx, ev)
	if err != nil {
		return nil, errf(http.StatusInternalServerError, "%s", err.Error())
	}
	result := []map[string]any{}
	for _, i := range ifaces {
		addrs := []map[string]any{}
		for _, a := range i.Addresses {
			typ := "ipv4"
			if a.Addr().Is6() {
				typ = "ipv6"
			}
			addrs = append(addrs, map[string]any{"ip-address": a.Addr().String(), "ip-address-type": typ, "prefix": a.Bits()})
		}
		result = append(result, map[string]any{"name": i.Name, "hardware-address": strings.ToLower(i.HardwareAddress),
			"ip-addresses": addrs})
	}
	return map[string]any{"result": result}, nil
}

func (s *Sim) deleteQemu(r *request) (any, error) {
	node, vmid := r.str("node"), r.int("vmid")
	if r.bool("skiplock") && (r.userID != "root@pam" || strings.Contains(r.authID, "!")) {
		return nil, paramErr1("skiplock", "Only root may use this option.")
	}
	early := func() (*simVM, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		v, err := s.loadVMLocked(node, vmid)
		if err != nil {
			return nil, err
		}
		if v.conf["protection"] == "1" {
			return nil, errf(http.StatusInternalServerError, "can't remove VM %d - protection mode enabled", vmid)
		}
		if v.running {
			return nil, errf(http.StatusInternalServerError, "VM %d is running - destroy failed", vmid)
		}
		return v, nil
	}
	if _, err := early(); err != nil {
		return nil, err
	}
	return s.vmTask(r, node, vmid, "qmdestroy", func(ctx context.Context, t *task) error {
		v, err := early()
		if err != nil {
			return err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if !r.bool("skiplock") {
			if err := checkConfLock(v); err != nil {
				return err
			}
		}
		if v.conf["template"] == "1" {
			for _, other := range s.vms {
				for k, val := range other.conf {
					if isDiskSlot(k) && other != v && strings.Contains(propFile(val), fmt.Sprintf("base-%d-disk", vmid)) {
						return fmt.Errorf("base volume '%s' is still in use by linked clone %d", propFile(val), other.vmid)
					}
				}
			}
		}
		for key, vols := range s.volumes {
			for id, vol := range vols {
				if vol.vmid == vmid && (strings.HasPrefix(key, v.node+"/") || !strings.Contains(key, "/")) {
					delete(vols, id)
					t.logf("Removing image: %s", id)
				}
			}
		}
		delete(s.vms, vmid)
		return nil
	})
}

// vmTask takes the VM's lock (waiting as PVE does, then failing with its
// "can't lock file" message) and starts a task of typ on node that holds the
// lock until run returns.
func (s *Sim) vmTask(r *request, node string, vmid int, typ string, run func(ctx context.Context, t *task) error) (any, error) {
	release, err := s.acquireLock(r.ctx, vmid)
	if err != nil {
		return nil, err
	}
	return s.startTask(taskSpec{node: node, typ: typ, id: strconv.Itoa(vmid), user: r.authID, release: release, run: run}), nil
}
