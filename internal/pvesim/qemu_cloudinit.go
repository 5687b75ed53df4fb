package pvesim

// Cloud-init drives and cicustom snippets.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// cloudinitVolid is the cloud-init drive volume PVE allocates for vmid.
func cloudinitVolid(st *Storage, vmid int) string {
	if fileBased(st.Type) {
		return fmt.Sprintf("%s:%d/vm-%d-cloudinit.qcow2", st.ID, vmid, vmid)
	}
	return fmt.Sprintf("%s:vm-%d-cloudinit", st.ID, vmid)
}

// SetNodeDir gives a node a directory that stands for its root file
// system (e.g. the chroot of its simulated sshd, see StartSSHD): the
// snippets of a file-based storage with Path P are the files
// dir/P/snippets/NAME. A VM start reads its cicustom snippets there, as
// well as among the volumes the Sim knows (AddVolume).
func (s *Sim) SetNodeDir(node, dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.nodes[node]; ok {
		n.dir = dir
	}
}

// SnippetsDir is where a node's snippets of a file-based storage live on
// this machine (NodeDir/Path/snippets), or "" when the node has no
// directory or the storage no path.
func (s *Sim) SnippetsDir(node, storage string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snippetsDirLocked(node, storage)
}

func (s *Sim) snippetsDirLocked(node, storage string) string {
	n, st := s.nodes[node], s.storages[storage]
	if n == nil || n.dir == "" || st == nil || st.Path == "" || !fileBased(st.Type) {
		return ""
	}
	return filepath.Join(n.dir, filepath.FromSlash(st.Path), "snippets")
}

// cicustomOrder is the order PVE's get_custom_cloudinit_files reads them.
var cicustomOrder = [...]string{"network", "user", "meta", "vendor"}

// reSnippetVolname is what a dir storage's parse_volname takes as a snippet.
var reSnippetVolname = regexp.MustCompile(`^snippets/([^/]+)$`)

// checkCICustomLocked is what PVE's vm_start does through
// apply_cloudinit_config when the VM has its cloud-init drive
// (vm-<vmid>-cloudinit): every cicustom volume is read, so a missing one
// fails the start with pve-storage's "can't find file '<volid>'"
// (abs_filesystem_path), one outside the snippets directory with "<volid>
// is not in the snippets directory" (read_cloudinit_snippets_file), one on
// an unknown storage with "storage '<id>' does not exist". conf is the
// config with its pending changes applied, as vm_start applies them first.
func (s *Sim) checkCICustomLocked(node string, vmid int, conf map[string]string) error {
	if conf["cicustom"] == "" || !hasCloudinitDrive(vmid, conf) {
		return nil
	}
	files, err := s.parseProp("cicustom", conf["cicustom"])
	if err != nil {
		return fmt.Errorf("cicustom: %w", err)
	}
	for _, kind := range cicustomOrder {
		if volid := files[kind]; volid != "" {
			if err := s.findSnippetLocked(node, volid); err != nil {
				return err
			}
		}
	}
	return nil
}

func hasCloudinitDrive(vmid int, conf map[string]string) bool {
	want := fmt.Sprintf("vm-%d-cloudinit", vmid)
	for k, v := range conf {
		if isDiskSlot(k) && strings.Contains(propFile(v), want) {
			return true
		}
	}
	return false
}

// findSnippetLocked finds a snippet volume on a node: known to the Sim, or
// a regular file in the node's directory.
func (s *Sim) findSnippetLocked(node, volid string) error {
	storage, volname, _ := strings.Cut(volid, ":")
	st := s.storages[storage]
	if st == nil {
		return fmt.Errorf("storage '%s' does not exist", storage)
	}
	m := reSnippetVolname.FindStringSubmatch(volname)
	if m == nil || !fileBased(st.Type) {
		return fmt.Errorf("%s is not in the snippets directory", volid)
	}
	if s.volumes[s.contentKey(node, storage)][volid] != nil {
		return nil
	}
	if dir := s.snippetsDirLocked(node, storage); dir != "" {
		fi, err := os.Stat(filepath.Join(dir, m[1]))
		if err == nil && fi.Mode().IsRegular() {
			return nil
		}
	}
	return errors.New("can't find file '" + volid + "'")
}

// NodeDir is the directory given to a node with SetNodeDir, or "".
func (s *Sim) NodeDir(node string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.nodes[node]; ok {
		return n.dir
	}
	return ""
}
