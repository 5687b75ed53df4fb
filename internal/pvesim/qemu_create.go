package pvesim

// Creating, templating and destroying VMs.

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

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
	release, err := s.addVMUnlock(r.ctx, v)
	if err != nil {
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
