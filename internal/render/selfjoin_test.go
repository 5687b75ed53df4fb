package render

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestSelfJoinSeed: a node with Join set gets its ticket (0600), the CA,
// the script and its unit in write_files, the unit enabled in runcmd, and
// the user-data is still valid cloud-config (cloud-init schema) and
// python3 compiles the script. A node without Join gets none of it.
func TestSelfJoinSeed(t *testing.T) {
	inv := example(t)
	r := renderer(t)
	n := findNode(t, inv, "pi-r1-07")
	d, err := NewData(inv, n)
	if err != nil {
		t.Fatal(err)
	}
	d.Baked = true
	d.Join = &JoinSeed{Node: n.Name, URL: "https://192.168.10.5:9443/v1/join", Ticket: "pjt_test-ticket",
		CACert: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}
	f, err := r.Render(d)
	if err != nil {
		t.Fatal(err)
	}
	var ud struct {
		WriteFiles []struct {
			Path, Permissions, Content string
		} `yaml:"write_files"`
		Runcmd [][]string `yaml:"runcmd"`
	}
	if err := yaml.Unmarshal(f.UserData, &ud); err != nil {
		t.Fatalf("user-data: %v\n%s", err, f.UserData)
	}
	files := map[string]string{}
	modes := map[string]string{}
	for _, w := range ud.WriteFiles {
		files[w.Path], modes[w.Path] = w.Content, w.Permissions
	}
	if c := files[JoinConfigPath]; !strings.Contains(c, `"ticket": "pjt_test-ticket"`) || !strings.Contains(c, `"node": "pi-r1-07"`) || modes[JoinConfigPath] != "0600" {
		t.Errorf("config %s (mode %s):\n%s", JoinConfigPath, modes[JoinConfigPath], c)
	}
	if files[JoinCAPath] != d.Join.CACert {
		t.Errorf("CA file %q, want the CA", files[JoinCAPath])
	}
	if !strings.HasPrefix(files[JoinScriptPath], "#!/usr/bin/python3\n") || modes[JoinScriptPath] != "0755" {
		t.Errorf("script %s mode %s", JoinScriptPath, modes[JoinScriptPath])
	}
	if !strings.Contains(files[JoinUnitPath], "ExecStart=/usr/bin/python3 "+JoinScriptPath) {
		t.Errorf("unit:\n%s", files[JoinUnitPath])
	}
	enabled := false
	for _, c := range ud.Runcmd {
		enabled = enabled || strings.Join(c, " ") == "systemctl enable --now --no-block provision-self-join.service"
	}
	if !enabled {
		t.Errorf("runcmd does not start provision-self-join: %v", ud.Runcmd)
	}

	dir := t.TempDir()
	script := filepath.Join(dir, "provision-self-join")
	os.WriteFile(script, []byte(files[JoinScriptPath]), 0o755)
	if out, err := exec.Command(tool(t, "python3", "python3"), "-m", "py_compile", script).CombinedOutput(); err != nil {
		t.Errorf("python3 cannot compile the script: %v\n%s", err, out)
	}
	ci := filepath.Join(dir, "user-data")
	os.WriteFile(ci, f.UserData, 0o644)
	out, err := exec.Command(tool(t, "cloud-init", "cloud-init"), "schema", "--config-file", ci).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Valid cloud-config") {
		t.Errorf("cloud-init schema: %v\n%s", err, out)
	}

	plain, err := r.Node(inv, n)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(plain.UserData), "provision-self-join") {
		t.Error("a node without Join gets the self-join files")
	}
}
