package image

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/swarm/selfjoin"
	"gopkg.in/yaml.v3"
)

// selfJoinRack makes rack r1 of b's inventory join by itself, with tickets
// from a join endpoint whose directory is in dir.
func selfJoinRack(t *testing.T, b *Builder, dir string) *selfjoin.Endpoint {
	t.Helper()
	b.Inv.Lab.Pis.JoinServer = inventory.JoinServer{Address: "192.168.10.5", Port: 9443, TicketTTL: "1h"}
	for i := range b.Inv.Nodes {
		if b.Inv.Nodes[i].Rack == "r1" {
			b.Inv.Nodes[i].Join = inventory.JoinSelf
		}
	}
	ep, err := selfjoin.FromInventory(b.Inv, dir)
	if err != nil {
		t.Fatal(err)
	}
	b.Join = ep.Seed
	return ep
}

// TestSeedsSelfJoin: the seed of a Pi of a self-joining rack carries its
// own ticket (recorded only as a hash), the endpoint's URL and the lab CA,
// is readable by root only, and is valid cloud-config; a push node's seed
// has none of it. Seeding again issues a new ticket.
func TestSeedsSelfJoin(t *testing.T) {
	needImageTools(t)
	dir := t.TempDir()
	b, _ := buildFlavour(t, dir, "raspios-trixie", 2)
	state := filepath.Join(dir, "state")
	ep := selfJoinRack(t, b, state)
	seeds := filepath.Join(dir, "seeds")
	if _, err := WriteSeeds(context.Background(), b, "", seeds); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(ep.Dir, selfjoin.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	tickets := map[string]string{}
	for _, node := range []string{"pi-r1-01", "pi-r1-02"} {
		_, files, err := ReadSeed(filepath.Join(seeds, node))
		if err != nil {
			t.Fatal(err)
		}
		conf, gotCA := joinFiles(t, files["/user-data"])
		if conf["node"] != node || conf["url"] != "https://192.168.10.5:9443/v1/join" || !strings.HasPrefix(conf["ticket"], "pjt_") {
			t.Errorf("%s: join config %v", node, conf)
		}
		if gotCA != string(ca) {
			t.Errorf("%s: the seed's CA is not the lab CA", node)
		}
		tickets[node] = conf["ticket"]
		if st, err := os.Stat(filepath.Join(seeds, node, "user-data")); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: user-data mode %v %v, want 0600", node, st.Mode().Perm(), err)
		}
		out, err := exec.Command(need(t, "cloud-init", "cloud-init"), "schema", "--config-file", filepath.Join(seeds, node, "user-data")).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("Valid cloud-config")) {
			t.Errorf("%s: cloud-init schema: %v\n%s", node, err, out)
		}
	}
	if tickets["pi-r1-01"] == tickets["pi-r1-02"] {
		t.Error("two nodes got the same ticket")
	}
	_, files, err := ReadSeed(filepath.Join(seeds, "pi-m1-01"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(files["/user-data"], []byte("provision-self-join")) {
		t.Error("the push node's seed has the self-join files")
	}
	// The store knows each ticket by its hash only, bound to the node.
	list, err := ep.Store().Tickets()
	if err != nil || len(list) != 2 || list[0].Node != "pi-r1-01" || list[0].Addr != "192.168.11.1" || !list[0].Expires.After(time.Now().Add(50*time.Minute)) {
		t.Errorf("tickets %+v %v", list, err)
	}
	data, _ := os.ReadFile(filepath.Join(ep.Dir, selfjoin.TicketsFile))
	for _, tk := range tickets {
		if bytes.Contains(data, []byte(tk)) {
			t.Error("the tickets file holds a ticket")
		}
	}
	// Seeding again keeps the unused tickets: nothing changes. Once
	// pi-r1-01's ticket is used, it gets a new one; pi-r1-02 keeps its own.
	again, err := WriteSeeds(context.Background(), b, "r1", seeds)
	if err != nil || again.Unchanged != 2 {
		t.Errorf("second seeding %+v %v: want both unchanged", again, err)
	}
	if _, err := ep.Store().Redeem(tickets["pi-r1-01"], "pi-r1-01", netip.MustParseAddr("192.168.11.1")); err != nil {
		t.Fatal(err)
	}
	third, err := WriteSeeds(context.Background(), b, "r1", seeds)
	if err != nil || third.Written != 1 || third.Unchanged != 1 {
		t.Errorf("seeding after pi-r1-01 used its ticket %+v %v: want 1 written, 1 unchanged", third, err)
	}
	for node, wantNew := range map[string]bool{"pi-r1-01": true, "pi-r1-02": false} {
		_, files, _ = ReadSeed(filepath.Join(seeds, node))
		if conf, _ := joinFiles(t, files["/user-data"]); (conf["ticket"] != tickets[node]) != wantNew {
			t.Errorf("%s: new ticket %v, want %v", node, conf["ticket"] != tickets[node], wantNew)
		}
	}
}

// TestSeedsSelfJoinFirstrun: a Bookworm (firstrun.sh) seed writes the
// same files, the config 0600, and is valid bash.
func TestSeedsSelfJoinFirstrun(t *testing.T) {
	needImageTools(t)
	dir := t.TempDir()
	b, _ := buildFlavour(t, dir, "raspios-bookworm", 1)
	selfJoinRack(t, b, filepath.Join(dir, "state"))
	seeds := filepath.Join(dir, "seeds")
	if _, err := WriteSeeds(context.Background(), b, "r1", seeds); err != nil {
		t.Fatal(err)
	}
	_, files, err := ReadSeed(filepath.Join(seeds, "pi-r1-01"))
	if err != nil {
		t.Fatal(err)
	}
	script := string(files["/firstrun.sh"])
	for _, w := range []string{"cat >" + render.JoinConfigPath, "chmod 0600 " + render.JoinConfigPath, "cat >" + render.JoinScriptPath, "systemctl enable provision-self-join.service", `"ticket": "pjt_`} {
		if !strings.Contains(script, w) {
			t.Errorf("firstrun.sh lacks %q", w)
		}
	}
	if out, err := exec.Command("bash", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Errorf("bash -n firstrun.sh: %v\n%s", err, out)
	}
}

// joinFiles returns the join config and CA a user-data writes.
func joinFiles(t *testing.T, userData []byte) (map[string]string, string) {
	t.Helper()
	var ud struct {
		WriteFiles []struct{ Path, Content string } `yaml:"write_files"`
	}
	if err := yaml.Unmarshal(userData, &ud); err != nil {
		t.Fatal(err)
	}
	conf := map[string]string{}
	var ca string
	for _, w := range ud.WriteFiles {
		switch w.Path {
		case render.JoinConfigPath:
			if err := json.Unmarshal([]byte(w.Content), &conf); err != nil {
				t.Fatal(err)
			}
		case render.JoinCAPath:
			ca = w.Content
		}
	}
	return conf, ca
}
