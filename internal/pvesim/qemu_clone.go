package pvesim

// Cloning VMs (full and linked).

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

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
	release, err := s.addVMUnlock(r.ctx, nv)
	if err != nil {
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
