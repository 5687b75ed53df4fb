package render

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestUsersUseradd creates every user the user-data asks for with the real
// useradd, as cloud-init's users-groups module does (name, --comment from
// gecos, --shell, -m), in a scratch root (useradd --root). useradd refuses
// a gecos holding ':' and cloud-init then boots a node nobody can log in to,
// which `cloud-init schema` does not catch.
func TestUsersUseradd(t *testing.T) {
	useradd := tool(t, "useradd", "passwd")
	inv := example(t)
	r := renderer(t)
	seen := map[string]bool{}
	for i := range inv.Nodes {
		n := &inv.Nodes[i]
		if seen[string(n.Kind)] {
			continue
		}
		seen[string(n.Kind)] = true
		files, err := r.Node(inv, n)
		if err != nil {
			t.Fatal(err)
		}
		var u struct {
			Users []struct {
				Name  string `yaml:"name"`
				Gecos string `yaml:"gecos"`
				Shell string `yaml:"shell"`
			} `yaml:"users"`
		}
		if err := yaml.Unmarshal(files.UserData, &u); err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		for _, user := range u.Users {
			root := scratchRoot(t)
			args := []string{"--root", root, "-m"}
			if user.Gecos != "" {
				args = append(args, "--comment", user.Gecos)
			}
			if user.Shell != "" {
				args = append(args, "--shell", user.Shell)
			}
			out, err := exec.Command(useradd, append(args, user.Name)...).CombinedOutput()
			if err != nil {
				t.Errorf("%s: useradd %q: %v\n%s", n.Name, user.Name, err, out)
			}
		}
	}
}

// scratchRoot is a directory with the account files useradd --root needs.
func scratchRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"etc", "home"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd":     "root:x:0:0:root:/root:/bin/bash\n",
		"etc/group":      "root:x:0:\n",
		"etc/shadow":     "root:*:19000:0:99999:7:::\n",
		"etc/gshadow":    "root:*::\n",
		"etc/login.defs": "UID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return root
}
