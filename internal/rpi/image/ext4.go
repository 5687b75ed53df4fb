package image

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// ext4 is an ext4 file system inside an image file (at Offset bytes), read
// and written with e2fsprogs (debugfs, dumpe2fs, mke2fs): no mount, no
// loop device.
type ext4 struct {
	Image  string
	Offset int64
	// Epoch is the time debugfs stamps on what it writes
	// (E2FSPROGS_FAKE_TIME), for reproducible images.
	Epoch int64
}

// spec is how e2fsprogs addresses a file system inside a bigger file.
func (e ext4) spec() string {
	if e.Offset == 0 {
		return e.Image
	}
	return fmt.Sprintf("%s?offset=%d", e.Image, e.Offset)
}

func (e ext4) env() []string {
	env := []string{"PATH=/usr/sbin:/sbin:/usr/bin:/bin", "LC_ALL=C", "DEBUGFS_PAGER=__none__", "PAGER=cat"}
	if e.Epoch > 0 {
		env = append(env, "E2FSPROGS_FAKE_TIME="+strconv.FormatInt(e.Epoch, 10))
	}
	return env
}

// debugfs runs a debugfs script (-f -) and returns its standard output. Any
// error message of debugfs is an error: debugfs itself exits 0 after a
// failed command.
func (e ext4) debugfs(ctx context.Context, write bool, script string) ([]byte, error) {
	args := []string{"-f", "-"}
	if write {
		args = append([]string{"-w"}, args...)
	}
	cmd := exec.CommandContext(ctx, "debugfs", append(args, e.spec())...)
	cmd.Env = e.env()
	cmd.Stdin = strings.NewReader(script)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("debugfs %s: %w: %s", e.spec(), err, strings.TrimSpace(stderr.String()))
	}
	if msg := debugfsErrors(stderr.Bytes()); msg != "" {
		return stdout.Bytes(), fmt.Errorf("debugfs %s: %s", e.spec(), msg)
	}
	return stdout.Bytes(), nil
}

// debugfsErrors is stderr without debugfs's version banner.
func debugfsErrors(stderr []byte) string {
	var msgs []string
	for line := range strings.Lines(string(stderr)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "debugfs ") && strings.Contains(line, "(") {
			continue
		}
		msgs = append(msgs, line)
	}
	return strings.Join(msgs, "; ")
}

// cat returns the content of path, or ok=false when it does not exist.
func (e ext4) cat(ctx context.Context, path string) ([]byte, bool, error) {
	st, err := e.stat(ctx, path)
	if err != nil {
		return nil, false, err
	}
	if st[path].Type == "" {
		return nil, false, nil
	}
	if st[path].Type == "symlink" {
		target := st[path].Target
		if !strings.HasPrefix(target, "/") {
			target = parentDir(path) + "/" + target
		}
		return e.cat(ctx, cleanPath(target))
	}
	out, err := e.debugfs(ctx, false, "cat "+quoteArg(path)+"\n")
	if err != nil {
		return nil, false, err
	}
	// -f echoes each command first: "debugfs: cat /x\n".
	_, body, _ := bytes.Cut(out, []byte("\n"))
	return body, true, nil
}

// inode is what stat tells about a path.
type inode struct {
	Type   string // regular, directory, symlink, ...; "" when missing
	Mode   uint32 // permission bits
	UID    int
	GID    int
	Size   int64
	Target string // symlink target
}

// stat looks up every path in one debugfs run; missing paths get an empty
// Type.
func (e ext4) stat(ctx context.Context, paths ...string) (map[string]inode, error) {
	var script strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&script, "stat %s\n", quoteArg(p))
	}
	cmd := exec.CommandContext(ctx, "debugfs", "-f", "-", e.spec())
	cmd.Env = e.env()
	cmd.Stdin = strings.NewReader(script.String())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("debugfs %s: %w: %s", e.spec(), err, strings.TrimSpace(stderr.String()))
	}
	res := make(map[string]inode, len(paths))
	for _, p := range paths {
		res[p] = inode{}
	}
	var cur string
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "debugfs: stat "); ok {
			cur = unquoteArg(p)
			continue
		}
		if cur == "" {
			continue
		}
		in := res[cur]
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "Inode:") && len(f) >= 6:
			in.Type = f[3]
			m, _ := strconv.ParseUint(f[5], 8, 32)
			in.Mode = uint32(m)
		case strings.HasPrefix(line, "User:") && len(f) >= 4:
			in.UID, _ = strconv.Atoi(f[1])
			in.GID, _ = strconv.Atoi(f[3])
			if i := strings.Index(line, "Size: "); i >= 0 {
				in.Size, _ = strconv.ParseInt(strings.TrimSpace(line[i+6:]), 10, 64)
			}
		case strings.HasPrefix(line, "Fast link dest: "):
			in.Target = unquoteArg(strings.TrimPrefix(line, "Fast link dest: "))
		}
		res[cur] = in
	}
	// Slow symlinks (targets over 60 bytes) keep the target in a block.
	for p, in := range res {
		if in.Type == "symlink" && in.Target == "" {
			out, err := e.debugfs(ctx, false, "cat "+quoteArg(p)+"\n")
			if err == nil {
				_, body, _ := bytes.Cut(out, []byte("\n"))
				in.Target = string(body)
				res[p] = in
			}
		}
	}
	return res, nil
}

// fsInfo is the superblock summary of dumpe2fs -h.
type fsInfo struct {
	Label      string
	UUID       string
	BlockSize  int64
	Blocks     int64
	FreeBlocks int64
	FreeInodes int64
}

func (e ext4) info(ctx context.Context) (fsInfo, error) {
	out, err := e.dumpe2fs(ctx, "-h")
	if err != nil {
		return fsInfo{}, fmt.Errorf("not an ext4 file system (%w)", err)
	}
	sb := superblock(out)
	fi := fsInfo{UUID: sb["Filesystem UUID"], BlockSize: sb.num("Block size"), Blocks: sb.num("Block count"),
		FreeBlocks: sb.num("Free blocks"), FreeInodes: sb.num("Free inodes")}
	if v := sb["Filesystem volume name"]; v != "<none>" {
		fi.Label = v
	}
	if fi.BlockSize == 0 {
		return fsInfo{}, fmt.Errorf("dumpe2fs %s: no block size in its output", e.spec())
	}
	return fi, nil
}

// dumpe2fs runs dumpe2fs with args on the file system and returns what it
// printed.
func (e ext4) dumpe2fs(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "dumpe2fs", append(args, e.spec())...)
	cmd.Env = e.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("dumpe2fs %s: %s", e.spec(), firstLine(stderr.String()))
	}
	return stdout.String(), nil
}

// superblockFields are the "Name: value" lines of dumpe2fs's superblock
// summary (the first of each name; the per-group lines are indented or
// start with "Group N:", a name no caller asks for).
type superblockFields map[string]string

func superblock(out string) superblockFields {
	f := superblockFields{}
	for line := range strings.Lines(out) {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, " ") {
			continue
		}
		if _, seen := f[k]; !seen {
			f[k] = strings.TrimSpace(v)
		}
	}
	return f
}

// num is field k as a number, 0 when it is missing or not one.
func (f superblockFields) num(k string) int64 {
	n, _ := strconv.ParseInt(f[k], 10, 64)
	return n
}

// mkfs makes an ext4 file system of size bytes in the file out, filled with
// the tree under dir (mke2fs -d), owned by root, with a fixed UUID and hash
// seed and the times of epoch, so the same tree gives the same bytes.
func mkfs(ctx context.Context, out string, size int64, dir, label, uuid string, epoch int64) error {
	args := []string{"-q", "-F", "-t", "ext4", "-b", "4096", "-L", label, "-U", uuid,
		"-E", "hash_seed=" + uuid + ",root_owner=0:0,lazy_itable_init=1,nodiscard",
		"-d", dir, out, strconv.FormatInt(size/1024, 10) + "k"}
	cmd := exec.CommandContext(ctx, "mke2fs", args...)
	cmd.Env = ext4{Epoch: epoch}.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mke2fs -d %s: %w: %s", dir, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func quoteArg(s string) string {
	if !strings.ContainsAny(s, " \t\"") {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

func unquoteArg(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return strings.ReplaceAll(s[1:len(s)-1], `\"`, `"`)
	}
	return s
}

func firstLine(s string) string {
	for line := range strings.Lines(s) {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "dumpe2fs ") {
			return line
		}
	}
	return strings.TrimSpace(s)
}

func parentDir(p string) string {
	i := strings.LastIndex(p, "/")
	if i <= 0 {
		return ""
	}
	return p[:i]
}

func cleanPath(p string) string {
	var parts []string
	for _, s := range strings.Split(p, "/") {
		switch s {
		case "", ".":
		case "..":
			if len(parts) > 0 {
				parts = parts[:len(parts)-1]
			}
		default:
			parts = append(parts, s)
		}
	}
	return "/" + strings.Join(parts, "/")
}

// clampTimes sets the access and change times of every inode mke2fs -d
// copied from tree to epoch, and modification times later than epoch to
// epoch (as SOURCE_DATE_EPOCH asks). mke2fs copies st_atime and st_ctime
// from the tree, and a tree made at another moment (the ctime of a file
// cannot be set) would otherwise give other bytes.
func clampTimes(ctx context.Context, e ext4, tree string, epoch int64) error {
	var script strings.Builder
	at := "@" + strconv.FormatInt(epoch, 10)
	err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(tree, p)
		dst := quoteArg(cleanPath("/" + filepath.ToSlash(rel)))
		fmt.Fprintf(&script, "sif %s atime %s\nsif %s ctime %s\n", dst, at, dst, at)
		if info, err := d.Info(); err == nil && info.ModTime().Unix() > epoch {
			fmt.Fprintf(&script, "sif %s mtime %s\n", dst, at)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("clamp times: %w", err)
	}
	if _, err := e.debugfs(ctx, true, script.String()); err != nil {
		return fmt.Errorf("clamp times: %w", err)
	}
	return nil
}
