package smoke

import (
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/testtool"
	"github.com/fhlab/provision/templates"
)

const exampleInventory = "../../../inventory/example.yaml"

var loadExample = sync.OnceValues(func() (*inventory.Inventory, error) { return inventory.Load(exampleInventory) })

// pi returns the data and seed of the example inventory's first Pi.
func pi(t *testing.T) (*render.Data, render.Files) {
	t.Helper()
	inv, err := loadExample()
	if err != nil {
		t.Fatal(err)
	}
	r, err := render.New(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	for i := range inv.Nodes {
		n := &inv.Nodes[i]
		if n.Kind != inventory.KindPi {
			continue
		}
		d, err := render.NewData(inv, n)
		if err != nil {
			t.Fatal(err)
		}
		f, err := r.Node(inv, n)
		if err != nil {
			t.Fatal(err)
		}
		return d, f
	}
	t.Fatal("example inventory has no Pi")
	return nil, render.Files{}
}

// tool returns the path of a program the test needs: skipped without it,
// failed under CI=true.
func tool(t *testing.T, name string) string {
	t.Helper()
	return testtool.Need(t, name, "")
}

func TestParseConsole(t *testing.T) {
	con := "[   12.3] Kernel line\r\n" +
		"\x1b[0;32m  OK  \x1b[0m] Started foo.\r\n" +
		"SMOKE hostname=pi-r1-01\r\n" +
		"[  99.1] some noise SMOKE sysctl.net.ipv4.tcp_keepalive_time=600\n" +
		"SMOKE ipvs_log=provision-netns-tuning: tuned 1 namespaces (ipvs: yes), 0 failed\n" +
		"SMOKE empty=\n" +
		"SMOKE done=1\n"
	var log strings.Builder
	c, err := Parse(strings.NewReader(con), &log, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"hostname": "pi-r1-01", "sysctl.net.ipv4.tcp_keepalive_time": "600",
		"ipvs_log": "provision-netns-tuning: tuned 1 namespaces (ipvs: yes), 0 failed", "empty": "", "done": "1",
	}
	for k, v := range want {
		if got, ok := c.Values[k]; !ok || got != v {
			t.Errorf("%s = %q (%v), want %q", k, got, ok, v)
		}
	}
	if !c.Done || c.Panic != "" || c.Lines != 7 {
		t.Errorf("done=%v panic=%q lines=%d", c.Done, c.Panic, c.Lines)
	}
	if strings.Contains(log.String(), "\x1b") || strings.Contains(log.String(), "\r") {
		t.Errorf("console log keeps escapes: %q", log.String())
	}
	c, _ = Parse(strings.NewReader("[ 3.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n"), nil, nil)
	if c.Panic == "" || c.Done {
		t.Errorf("panic not seen: %+v", c)
	}
}

func TestChecksAndScriptAgree(t *testing.T) {
	d, _ := pi(t)
	script := Script(d)
	for _, c := range Checks(d) {
		if !strings.Contains(script, "say "+c.Key+" ") {
			t.Errorf("the guest script never prints %s", c.Key)
		}
	}
	sh := tool(t, "sh")
	if out, err := exec.Command(sh, "-n", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("guest script does not parse: %v: %s\n%s", err, out, script)
	}
	// Values from the example inventory's tuning.
	for _, kv := range [][2]string{{"net.ipv4.tcp_keepalive_time", "600"}, {"net.ipv4.ip_forward", "1"}} {
		if !slices.Contains(Sysctls(d), kv) {
			t.Errorf("Sysctls lacks %v: %v", kv, Sysctls(d))
		}
	}
}

func TestEvaluate(t *testing.T) {
	d, _ := pi(t)
	good := map[string]string{
		"cloud_init": "done", "hostname": d.Hostname, "machine_id": "set",
		"ssh_user": d.SSH.User + " sudo docker", "ssh_user_keys": strconv.Itoa(len(d.SSH.AuthorizedKeys)),
		"link_file": "present", "link_file.docker0": LinkFile, "link_file.veth": LinkFile,
		"docker_active": "active", "docker_info": "20.10.24+dfsg1 overlay2 cgroup2",
		"docker_log_driver": d.Tuning.Docker.LogDriver, "docker_limit_nofile": d.Tuning.Docker.LimitNOFILE,
		"ipvs_timer": "enabled active", "ipvs_service": "success",
		"ipvs_no_module":       "provision-netns-tuning: this kernel has no IPVS (no /proc/net/ip_vs and no ip_vs module): ...",
		"ipvs_log":             "provision-netns-tuning: tuned 1 namespaces (ipvs: yes), 0 failed",
		"ipvs_journal":         "provision-netns-tuning.service: Deactivated successfully.",
		"netns_keepalive_time": "600", "netns_ipvs_timeout": "7300",
		"zram_swap": "/dev/zram0", "zram_algorithm": d.Tuning.Zram.Algorithm, "memory_cgroup": "on",
		"initramfs_nbd": "nbd nbd-client nbd.ko ",
	}
	for _, kv := range Sysctls(d) {
		good["sysctl."+kv[0]] = kv[1]
	}
	rs, ok := Evaluate(Checks(d), good)
	if !ok {
		t.Fatalf("a good guest fails:\n%s", Report(rs))
	}
	tests := []struct {
		key, val string
		drop     bool
	}{
		{key: "hostname", val: "debian-pi"},
		{key: "sysctl.net.ipv4.tcp_keepalive_time", val: "7200"},
		{key: "link_file.docker0", val: "/usr/lib/systemd/network/99-default.link"},
		{key: "docker_info", val: "Cannot connect to the Docker daemon at unix:///var/run/docker.sock"},
		{key: "ipvs_no_module", val: "modprobe: FATAL: Module ip_vs not found"},
		{key: "zram_swap", val: ""},
		{key: "initramfs_nbd", val: "nbd.ko "},
		{key: "ipvs_journal", val: "nothing after 20 s"},
		{key: "cloud_init", val: "error"},
		{key: "ipvs_timer", drop: true},
		{key: "ssh_user", val: "id: 'provision': no such user"},
		{key: "ssh_user_keys", val: "0"},
	}
	for _, tt := range tests {
		bad := map[string]string{}
		for k, v := range good {
			bad[k] = v
		}
		if tt.drop {
			delete(bad, tt.key)
		} else {
			bad[tt.key] = tt.val
		}
		rs, ok := Evaluate(Checks(d), bad)
		if ok {
			t.Errorf("%s=%q passes", tt.key, tt.val)
		}
		if rep := Report(rs); !strings.Contains(rep, "FAIL "+tt.key+" = ") {
			t.Errorf("report does not name %s:\n%s", tt.key, rep)
		}
	}
}

func TestSmokeUserData(t *testing.T) {
	d, seed := pi(t)
	ud, err := SmokeUserData(seed.UserData, Script(d))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(ud), "#cloud-config\n") {
		t.Errorf("user-data does not start with #cloud-config")
	}
	var cfg struct {
		Hostname   string           `yaml:"hostname"`
		Packages   []string         `yaml:"packages"`
		Update     *bool            `yaml:"package_update"`
		WriteFiles []map[string]any `yaml:"write_files"`
		Runcmd     [][]string       `yaml:"runcmd"`
	}
	if err := yaml.Unmarshal(ud, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Hostname != d.Hostname || cfg.Packages != nil || cfg.Update != nil {
		t.Errorf("hostname %q, packages %v, package_update %v", cfg.Hostname, cfg.Packages, cfg.Update)
	}
	var paths []string
	for _, f := range cfg.WriteFiles {
		paths = append(paths, f["path"].(string))
	}
	for _, p := range []string{ScriptPath, "/etc/systemd/system/" + UnitName, LinkFile, "/etc/sysctl.d/90-provision-swarm.conf"} {
		if !slices.Contains(paths, p) {
			t.Errorf("write_files lacks %s: %v", p, paths)
		}
	}
	last := cfg.Runcmd[len(cfg.Runcmd)-1]
	if !slices.Equal(last, []string{"systemctl", "start", "--no-block", UnitName}) {
		t.Errorf("last runcmd = %q", last)
	}
	// The user-data is still valid cloud-config for cloud-init itself.
	ci := tool(t, "cloud-init")
	p := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(p, ud, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ci, "schema", "--config-file", p).CombinedOutput(); err != nil {
		t.Errorf("cloud-init schema: %v: %s", err, out)
	}

	if _, err := SmokeUserData([]byte("- a list\n"), "x"); err == nil {
		t.Error("a list as user-data is accepted")
	}
}

func TestMachineArgs(t *testing.T) {
	m := Machine{QEMU: "q", CPUs: 2, Memory: 2048, Image: "/i/golden.img", Root: RootFS{Partition: 2, Offset: 1 << 29},
		Boot: BootFiles{Kernel: "/w/vmlinuz", Initrd: "/w/initrd"}, Seed: "/w/seed.img"}
	args := strings.Join(m.Args(), " ")
	for _, want := range []string{
		"-M virt -cpu cortex-a72", "-smp 2 -m 2048", "-nic none", "-serial stdio", "-no-reboot",
		"-kernel /w/vmlinuz -initrd /w/initrd", "root=/dev/vda2 rw", "console=ttyAMA0",
		"file=/i/golden.img,format=raw,if=virtio,snapshot=on", "file=/w/seed.img,format=raw,if=virtio,readonly=on",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("qemu args lack %q: %s", want, args)
		}
	}
	m.RootDrive = "file=nbd://127.0.0.1:10809/pi-r1-01,format=raw,if=virtio"
	if args := strings.Join(m.Args(), " "); !strings.Contains(args, "-drive "+m.RootDrive) || strings.Contains(args, "golden.img") {
		t.Errorf("with RootDrive, qemu args: %s", args)
	}
	for _, bad := range []string{"-netdev", "-nic user", "hostfwd"} {
		if strings.Contains(args, bad) {
			t.Errorf("qemu args have %q: %s", bad, args)
		}
	}
	if got := (RootFS{}).Device(); got != "/dev/vda" {
		t.Errorf("bare filesystem root = %s", got)
	}
}

// mkext4 makes an ext4 filesystem from dir at byte offset off of img.
func mkext4(t *testing.T, img, dir string, off int64, size string) {
	t.Helper()
	mke2fs := tool(t, "mke2fs")
	args := []string{"-q", "-F", "-t", "ext4", "-d", dir}
	if off > 0 {
		args = append(args, "-E", "offset="+strconv.FormatInt(off, 10))
	}
	if out, err := exec.Command(mke2fs, append(args, img, size)...).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v: %s", err, out)
	}
}

func TestFindRootAndExtractBoot(t *testing.T) {
	tool(t, "debugfs")
	tree := t.TempDir()
	if err := os.MkdirAll(filepath.Join(tree, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"vmlinuz-6.1.0-9-arm64": "old kernel", "initrd.img-6.1.0-9-arm64": "old initrd",
		"vmlinuz-6.1.0-10-arm64": "kernel ten", "initrd.img-6.1.0-10-arm64": "initrd ten",
		"config-6.1.0-10-arm64": "x",
	} {
		if err := os.WriteFile(filepath.Join(tree, "boot", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()

	// A bare filesystem.
	bare := filepath.Join(dir, "bare.ext4")
	mkext4(t, bare, tree, 0, "8M")
	r, err := FindRootFS(bare)
	if err != nil || r != (RootFS{}) {
		t.Fatalf("bare: %+v, %v", r, err)
	}

	// An MBR disk: partition 1 FAT (type 0x0c, empty here), partition 2
	// Linux with the filesystem at 4 MiB.
	disk := filepath.Join(dir, "disk.img")
	const off = 4 << 20
	mkext4(t, disk, tree, off, "8M")
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	mbr := make([]byte, 512)
	entry := func(i int, typ byte, start, sectors uint32) {
		e := mbr[446+16*i:]
		e[4] = typ
		binary.LittleEndian.PutUint32(e[8:], start)
		binary.LittleEndian.PutUint32(e[12:], sectors)
	}
	entry(0, 0x0c, 2048, 2048)
	entry(1, 0x83, off/512, 8<<11)
	mbr[510], mbr[511] = 0x55, 0xAA
	if _, err := f.WriteAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r, err = FindRootFS(disk)
	if err != nil || r.Partition != 2 || r.Offset != off || r.Device() != "/dev/vda2" {
		t.Fatalf("disk: %+v, %v", r, err)
	}
	work := t.TempDir()
	b, err := ExtractBoot(context.Background(), disk, r, work)
	if err != nil {
		t.Fatal(err)
	}
	// The newest kernel, by version (10 after 9), with its initramfs.
	if b.Version != "6.1.0-10-arm64" {
		t.Errorf("picked kernel %s, want 6.1.0-10-arm64", b.Version)
	}
	for p, want := range map[string]string{b.Kernel: "kernel ten", b.Initrd: "initrd ten"} {
		if got, err := os.ReadFile(p); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", p, got, err, want)
		}
	}

	// Not a disk at all.
	junk := filepath.Join(dir, "junk")
	if err := os.WriteFile(junk, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := FindRootFS(junk); err == nil || !strings.Contains(err.Error(), "neither an ext4 filesystem nor") {
		t.Errorf("junk: %v", err)
	}
	// A disk without a Linux partition.
	entry(1, 0x07, off/512, 8<<11)
	if err := os.WriteFile(junk, mbr, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := FindRootFS(junk); err == nil || !strings.Contains(err.Error(), "no Linux (0x83) partition") {
		t.Errorf("no linux partition: %v", err)
	}
}

func TestSeedDisk(t *testing.T) {
	tool(t, "mkfs.vfat")
	mtype := tool(t, "mtype")
	_, seed := pi(t)
	img := filepath.Join(t.TempDir(), "seed.img")
	if err := SeedDisk(context.Background(), img, seed); err != nil {
		t.Fatal(err)
	}
	for name, want := range seed.ByName() {
		cmd := exec.Command(mtype, "-i", img, "::"+name)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		got, err := cmd.Output()
		if err != nil || string(got) != string(want) {
			t.Errorf("%s on the seed disk: %v, %d bytes, want %d", name, err, len(got), len(want))
		}
	}
	if out, err := exec.Command(tool(t, "fsck.vfat"), "-n", img).CombinedOutput(); err != nil {
		t.Errorf("fsck.vfat -n: %v: %s", err, out)
	}
	label, err := exec.Command(tool(t, "mlabel"), "-s", "-i", img, "::").CombinedOutput()
	if err != nil || !strings.Contains(string(label), "CIDATA") {
		t.Errorf("label: %s %v", label, err)
	}
}

func TestPickPi(t *testing.T) {
	inv := &inventory.Inventory{File: "lab.yaml", Nodes: []inventory.Node{
		{Name: "mgr-01", Kind: inventory.KindVM},
		{Name: "pi-r1-01", Kind: inventory.KindPi, Boot: inventory.BootSD},
		{Name: "pi-r2-01", Kind: inventory.KindPi, Boot: inventory.BootNetboot},
	}}
	vmsOnly := &inventory.Inventory{File: "vms.yaml", Nodes: inv.Nodes[:1]}
	for _, c := range []struct {
		inv          *inventory.Inventory
		name, prefer string
		want, err    string
	}{
		{inv, "", "", "pi-r1-01", ""},
		{inv, "", inventory.BootNetboot, "pi-r2-01", ""},
		{inv, "", inventory.BootSD, "pi-r1-01", ""},
		{&inventory.Inventory{Nodes: inv.Nodes[:2]}, "", inventory.BootNetboot, "pi-r1-01", ""},
		{inv, "pi-r2-01", inventory.BootSD, "pi-r2-01", ""},
		{inv, "pi-r9-01", "", "", "lab.yaml has no node pi-r9-01"},
		{vmsOnly, "", "", "", "vms.yaml has no Raspberry Pi"},
	} {
		n, err := PickPi(c.inv, c.name, c.prefer)
		got := ""
		if n != nil {
			got = n.Name
		}
		if got != c.want || (err == nil) != (c.err == "") || (err != nil && err.Error() != c.err) {
			t.Errorf("PickPi(%q, %q) = %q, %v; want %q, %q", c.name, c.prefer, got, err, c.want, c.err)
		}
	}
}

func TestMilestone(t *testing.T) {
	for line, want := range map[string]bool{
		"[  OK  ] Reached target Multi-User System.":                      true,
		"[  104.72] cloud-init[621]: * Applying /etc/sysctl.conf ...":     false,
		"SMOKE hostname=pi-r1-01":                                         true,
		"[   12.3] Kernel panic - not syncing: VFS: Unable to mount root": true,
	} {
		if got := Milestone(line); got != want {
			t.Errorf("Milestone(%q) = %v", line, got)
		}
	}
}
