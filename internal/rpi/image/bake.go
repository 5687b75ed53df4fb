package image

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
)

// labOverlay is what every Pi image of the lab gets in its root file
// system, from the inventory and the definition alone (so it can be hashed
// before anything is built):
//   - the host tuning files user-data writes (render.HostFiles), with
//     docker's data-root when the definition moves it;
//   - the timer and memory-cgroup check enabled;
//   - the definition's overlay directories;
//   - an empty /etc/machine-id and no docker engine identity, so that every
//     Pi makes its own at first boot.
func labOverlay(inv *inventory.Inventory, r *render.Renderer, def *Definition) (Overlay, error) {
	files, err := r.HostFiles(inv, inventory.KindPi)
	if err != nil {
		return nil, err
	}
	var ov Overlay
	for _, f := range files {
		data := f.Content
		if f.Path == "/etc/docker/daemon.json" && def.DataRoot() != "/var/lib/docker" {
			if data, err = withDataRoot(data, def.DataRoot()); err != nil {
				return nil, err
			}
		}
		ov = append(ov, Entry{Path: f.Path, Kind: KindFile, Mode: f.Mode, Data: data})
	}
	ov = append(ov,
		Entry{Path: def.DataRoot(), Kind: KindDir, Mode: 0o710},
		// What `systemctl enable` would link (the units' [Install] sections).
		Entry{Path: "/etc/systemd/system/timers.target.wants/provision-netns-tuning.timer", Kind: KindSymlink, Target: "/etc/systemd/system/provision-netns-tuning.timer"},
		Entry{Path: "/etc/systemd/system/multi-user.target.wants/provision-memory-cgroup.service", Kind: KindSymlink, Target: "/etc/systemd/system/provision-memory-cgroup.service"},
	)
	for _, dir := range def.Overlays {
		entries, err := treeOverlay(def.FS, dir)
		if err != nil {
			return nil, fmt.Errorf("%s: overlay %s: %w", def.File, dir, err)
		}
		ov = append(ov, entries...)
	}
	ov = append(ov,
		// Empty, not absent: systemd then makes a new one at first boot and
		// treats the boot as the first (ConditionFirstBoot).
		Entry{Path: "/etc/machine-id", Kind: KindFile, Mode: 0o444},
		// provision-identity then keeps the machine-id systemd made (a new
		// one would split the first boot's journal in two).
		Entry{Path: "/var/lib/provision/identity", Kind: KindFile, Mode: 0o644, Data: []byte("empty-at-build\n")},
		Entry{Path: "/var/lib/dbus/machine-id", Kind: KindRemove},
		Entry{Path: "/etc/docker/key.json", Kind: KindRemove},
		Entry{Path: path.Join(def.DataRoot(), "engine-id"), Kind: KindRemove},
	)
	return ov, nil
}

// withDataRoot adds data-root to daemon.json.
func withDataRoot(daemon []byte, root string) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(daemon, &m); err != nil {
		return nil, fmt.Errorf("daemon.json: %w", err)
	}
	m["data-root"] = root
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// treeOverlay turns the files under dir of fsys into entries: directories
// 0755, files 0644, or 0755 under bin/ and sbin/ directories, owned by root.
func treeOverlay(fsys fs.FS, dir string) (Overlay, error) {
	var ov Overlay
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		dst := "/" + strings.TrimPrefix(p, dir+"/")
		if d.IsDir() {
			ov = append(ov, Entry{Path: dst, Kind: KindDir, Mode: 0o755})
			return nil
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o644)
		if strings.Contains(dst, "/bin/") || strings.Contains(dst, "/sbin/") {
			mode = 0o755
		}
		ov = append(ov, Entry{Path: dst, Kind: KindFile, Mode: mode, Data: data})
		return nil
	})
	return ov, err
}

// userOverlay adds ssh.user to the image's account files (unless it is
// there already), gives it the lab's authorized keys and password-less
// sudo. The account has no password ("*"): keys only.
func userOverlay(ctx context.Context, root ext4, user string, keys []string) (Overlay, error) {
	read := func(p string) (string, error) {
		b, _, err := root.cat(ctx, p)
		return string(b), err
	}
	passwd, err := read("/etc/passwd")
	if err != nil {
		return nil, err
	}
	if passwd == "" {
		return nil, fmt.Errorf("the root file system has no /etc/passwd")
	}
	group, err := read("/etc/group")
	if err != nil {
		return nil, err
	}
	shadow, err := read("/etc/shadow")
	if err != nil {
		return nil, err
	}
	gshadow, err := read("/etc/gshadow")
	if err != nil {
		return nil, err
	}
	uid, gid, home := -1, -1, "/home/"+user
	used := map[int]bool{}
	for line := range strings.Lines(passwd) {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) < 7 {
			continue
		}
		n, _ := strconv.Atoi(f[2])
		used[n] = true
		if f[0] == user {
			uid, _ = strconv.Atoi(f[2])
			gid, _ = strconv.Atoi(f[3])
			home = f[5]
		}
	}
	gids := map[int]bool{}
	for line := range strings.Lines(group) {
		if f := strings.Split(strings.TrimSpace(line), ":"); len(f) >= 3 {
			n, _ := strconv.Atoi(f[2])
			gids[n] = true
		}
	}
	var ov Overlay
	if uid < 0 {
		uid = 1000
		for used[uid] || gids[uid] {
			uid++
		}
		gid = uid
		passwd = withLine(passwd, fmt.Sprintf("%s:x:%d:%d:provision lab automation:%s:/bin/bash", user, uid, gid, home))
		group = withLine(group, fmt.Sprintf("%s:x:%d:", user, gid))
		if shadow != "" {
			shadow = withLine(shadow, user+":*:19000:0:99999:7:::")
		}
		if gshadow != "" {
			gshadow = withLine(gshadow, user+":!::")
		}
		// Supplementary groups, where the image has them.
		var extra []string
		group, extra = addToGroups(group, user, "sudo", "docker", "adm", "systemd-journal")
		gshadow, _ = addToGroups(gshadow, user, extra...)
		ov = append(ov,
			Entry{Path: "/etc/passwd", Kind: KindFile, Mode: 0o644, Data: []byte(passwd)},
			Entry{Path: "/etc/group", Kind: KindFile, Mode: 0o644, Data: []byte(group)},
		)
		// shadow files keep their owner group (shadow, 42) and mode.
		if shadow != "" {
			ov = append(ov, Entry{Path: "/etc/shadow", Kind: KindFile, Mode: 0o640, GID: shadowGID(group), Data: []byte(shadow)})
		}
		if gshadow != "" {
			ov = append(ov, Entry{Path: "/etc/gshadow", Kind: KindFile, Mode: 0o640, GID: shadowGID(group), Data: []byte(gshadow)})
		}
	}
	keyData := strings.Join(keys, "\n") + "\n"
	ov = append(ov,
		Entry{Path: home, Kind: KindDir, Mode: 0o750, UID: uid, GID: gid},
		Entry{Path: home + "/.ssh", Kind: KindDir, Mode: 0o700, UID: uid, GID: gid},
		Entry{Path: home + "/.ssh/authorized_keys", Kind: KindFile, Mode: 0o600, UID: uid, GID: gid, Data: []byte(keyData)},
		Entry{Path: "/etc/sudoers.d/90-provision", Kind: KindFile, Mode: 0o440, Data: []byte("# Written by provision: ssh.user runs docker and swarm commands without a password.\n" + user + " ALL=(ALL) NOPASSWD:ALL\n")},
	)
	return ov, nil
}

func withLine(file, line string) string {
	if file != "" && !strings.HasSuffix(file, "\n") {
		file += "\n"
	}
	return file + line + "\n"
}

// addToGroups adds user to the member list of the named groups present in
// a group (or gshadow) file; it returns the file and the groups found.
func addToGroups(file, user string, names ...string) (string, []string) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var found []string
	var b strings.Builder
	for line := range strings.Lines(file) {
		l := strings.TrimRight(line, "\n")
		f := strings.Split(l, ":")
		if len(f) == 4 && want[f[0]] {
			members := []string{}
			if f[3] != "" {
				members = strings.Split(f[3], ",")
			}
			if !contains(members, user) {
				members = append(members, user)
			}
			f[3] = strings.Join(members, ",")
			l = strings.Join(f, ":")
			found = append(found, f[0])
		}
		b.WriteString(l + "\n")
	}
	sort.Strings(found)
	return b.String(), found
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func shadowGID(group string) int {
	for line := range strings.Lines(group) {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) >= 3 && f[0] == "shadow" {
			n, _ := strconv.Atoi(f[2])
			return n
		}
	}
	return 0
}
