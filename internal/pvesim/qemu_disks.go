package pvesim

// Drives: allocation for create/config, resize and move.

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

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
