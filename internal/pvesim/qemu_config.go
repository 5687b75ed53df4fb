package pvesim

// Reading and changing a VM's config (pending changes included).

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
)

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
