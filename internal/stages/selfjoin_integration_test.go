package stages_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/lab"
	"github.com/fhlab/provision/internal/labtest"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/stages"
	"github.com/fhlab/provision/internal/swarm"
	"github.com/fhlab/provision/internal/swarm/selfjoin"
	"github.com/fhlab/provision/templates"
)

// TestIntegrationSelfJoin: on the emulated lab, 1 manager and 1 worker VM
// are pushed while a rack of 2 Pis joins by itself: each Pi runs the
// provision-self-join script from its rendered seed inside its own network
// namespace, started before the swarm exists (it retries until its dockerd
// and the endpoint answer), against the endpoint `provision swarm` serves
// on the lab bridge. All four end in one swarm, labelled, and `provision
// verify` passes; a re-run makes no mutating call and starts no endpoint;
// the used ticket is refused from the lab. No join token is in the seeds,
// the state directory, the logs, the output or the scripts' output.
func TestIntegrationSelfJoin(t *testing.T) {
	f := labtest.New(t, t.TempDir(), testWriter{t})
	f.Swarm = "{defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 20, managers: 1, ingress: {enabled: false}}"
	port := freePort(t)
	inv := f.Inventory(t, "selfjoin.yaml",
		"    - {name: mgr-%d, count: 1, role: manager, ipStart: {{ADDR 11}}}\n    - {name: vm-%d, count: 1, ipStart: {{ADDR 21}}, labels: {tier: compute}}",
		"    - {name: s1, count: 2, join: self, ipStart: {{ADDR 101}}, labels: {power: poe}}\n"+
			fmt.Sprintf("  joinServer: {address: {{ADDR 1}}, port: %d, ticketTTL: 1h}", port))
	var self []inventory.Node
	for _, n := range inv.Nodes {
		if n.Join == inventory.JoinSelf {
			self = append(self, n)
		}
	}
	if len(inv.Nodes) != 4 || len(self) != 2 {
		t.Fatalf("inventory: %d nodes, %d self-joining; want 4 and 2", len(inv.Nodes), len(self))
	}
	ctx := context.Background()
	f.Up(t, ctx, inv.Nodes)
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and %s is missing: install python3", python)
		}
		t.Skipf("skipping: %v", err)
	}

	// Each Pi's seed, as `provision image seed` renders it: its ticket, the
	// endpoint's URL and the lab CA; the script and its files come from the
	// seed's user-data.
	ep, err := selfjoin.FromInventory(inv, f.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := render.New(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	seedDir := filepath.Join(f.Dir, "seeds")
	joinDirs := map[string]string{}
	for i := range self {
		n := &self[i]
		js, err := ep.Seed(n, "")
		if err != nil {
			t.Fatal(err)
		}
		d, err := render.NewData(inv, n)
		if err != nil {
			t.Fatal(err)
		}
		d.Baked, d.Join = true, js
		files, err := r.Render(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(seedDir, n.Name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(seedDir, n.Name, render.UserData), files.UserData, 0o600); err != nil {
			t.Fatal(err)
		}
		joinDirs[n.Name] = installSeed(t, filepath.Join(f.Dir, "nodes", n.Name), files.UserData)
	}

	// The Pis boot first: their scripts wait for the endpoint.
	type scriptRun struct {
		name string
		out  lockedBuffer
		err  error
	}
	runs := make([]*scriptRun, len(self))
	var wg sync.WaitGroup
	for i, n := range self {
		runs[i] = &scriptRun{name: n.Name}
		wg.Go(func() {
			runs[i].err = runJoinScript(ctx, t, f, n.Name, joinDirs[n.Name], python, &runs[i].out)
		})
	}

	// The order, recorded: each script has tried the endpoint (and found
	// nothing there) before the swarm stage starts.
	for _, sr := range runs {
		deadline := time.Now().Add(3 * time.Minute)
		for !strings.Contains(sr.out.String(), "does not answer") {
			if time.Now().After(deadline) {
				t.Fatalf("%s's script never tried the endpoint:\n%s", sr.name, sr.out.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	logs := &lockedBuffer{}
	status := &lockedBuffer{}
	counter, out1, err := runSelfJoinSwarm(t, f, inv, status, logs)
	wg.Wait()
	for _, sr := range runs {
		t.Logf("%s's provision-self-join said:\n%s", sr.name, sr.out.String())
		if sr.err != nil {
			t.Errorf("%s's provision-self-join: %v", sr.name, sr.err)
		}
		if !strings.Contains(sr.out.String(), "the endpoint accepted the ticket") {
			t.Errorf("%s's script does not say its ticket was accepted", sr.name)
		}
		// Joined, the node drops its config and with it the ticket.
		if _, err := os.Stat(filepath.Join(joinDirs[sr.name], "config.json")); !os.IsNotExist(err) {
			t.Errorf("%s still has its join config after joining: %v", sr.name, err)
		}
	}
	if err != nil {
		t.Fatalf("provision swarm: %v\n%s%s", err, status, out1)
	}
	if c := counter.Calls(); c["POST /swarm/init"] != 1 || c["POST /swarm/join"] != 1 {
		t.Errorf("calls %v: want 1 init and 1 join (vm-1); the Pis join by themselves", c)
	}
	if !strings.Contains(status.String(), "self-join: 2 joined by themselves") {
		t.Errorf("status does not report the self-joined Pis:\n%s", status)
	}
	nodes := nodeList(t, f, "mgr-1")
	checkNodes(t, inv, nodes)
	for _, n := range self {
		if !strings.Contains(logs.String(), "self-join ticket exchanged") || !strings.Contains(logs.String(), "node="+n.Name) {
			t.Errorf("the exchange of %s's ticket is not logged", n.Name)
		}
	}

	// The same verified swarm as push.
	var img bytes.Buffer
	if _, err := lab.WriteBusyboxImage(&img, lab.ImageOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.Lab.LoadImage(ctx, img.Bytes()); err != nil {
		t.Fatal(err)
	}
	conn := stages.NewConnector(stages.SSH{KeyPath: f.KeyPath})
	defer conn.Close()
	venv := f.Env(t, inv, io.Discard, io.Discard)
	vout := &bytes.Buffer{}
	venv.Out = vout
	if err := (stages.Verify{SSH: conn, Image: lab.BusyboxImageTag}).Run(ctx, venv); err != nil {
		t.Fatalf("verify: %v\n%s", err, vout)
	}

	// A re-run changes nothing and serves nothing.
	logs2 := &lockedBuffer{}
	status2 := &lockedBuffer{}
	again, out, err := runSelfJoinSwarm(t, f, inv, status2, logs2)
	if err != nil {
		t.Fatalf("re-run: %v\n%s", err, out)
	}
	if n := again.Mutations(); n != 0 {
		t.Errorf("re-run made %d mutating API calls (%v), want 0", n, again.Calls())
	}
	if !strings.Contains(status2.String(), "self-join: all 2 nodes in the swarm and labelled: nothing changed") || strings.Contains(logs2.String(), "join endpoint listening") {
		t.Errorf("re-run status:\n%s\nlog:\n%s", status2, logs2)
	}

	// The used ticket, presented again from its Pi's address (inside its
	// namespace) while an endpoint runs, is refused with 409 and logged.
	refusalLog := &lockedBuffer{}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() {
		served <- ep.Serve(sctx, func(context.Context) (selfjoin.Grant, error) {
			return selfjoin.Grant{}, fmt.Errorf("no grant needed: the ticket is used")
		}, slog.New(slog.NewTextHandler(refusalLog, nil)))
	}()
	var rout lockedBuffer
	rerr := presentAgain(ctx, f, self[0].Name, joinDirs[self[0].Name], python, &rout)
	stop()
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
	if rerr != nil || !strings.Contains(rout.String(), "409 refused: ticket used already") || !strings.Contains(refusalLog.String(), "reason=\"ticket used already\"") {
		t.Errorf("a used ticket from the lab: %v\n%s\nlog:\n%s", rerr, rout.String(), refusalLog)
	}

	// No join token anywhere provision wrote or said something.
	token := workerToken(t, f, "mgr-1")
	var said []string
	for _, sr := range runs {
		said = append(said, sr.out.String())
	}
	said = append(said, logs.String(), status.String(), out1, out, logs2.String(), status2.String(), refusalLog.String(), rout.String(), vout.String())
	for i, s := range said {
		if strings.Contains(s, token) || strings.Contains(s, "SWMTKN-") {
			t.Errorf("output %d holds a join token", i)
		}
	}
	for _, dir := range []string{f.StateDir, seedDir, filepath.Join(f.Dir, "nodes")} {
		sjScan(t, dir, token)
	}
}

// installSeed writes the self-join files of a user-data (its write_files)
// into dir as the node's /etc/provision/join, and the script; it returns
// dir.
func installSeed(t *testing.T, dir string, userData []byte) string {
	t.Helper()
	var ud struct {
		WriteFiles []struct{ Path, Permissions, Content string } `yaml:"write_files"`
	}
	if err := yaml.Unmarshal(userData, &ud); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, w := range ud.WriteFiles {
		var name string
		switch w.Path {
		case render.JoinConfigPath, render.JoinCAPath:
			name = filepath.Base(w.Path)
		case render.JoinScriptPath:
			name = "provision-self-join"
		default:
			continue
		}
		found++
		mode := os.FileMode(0o600)
		if name == "provision-self-join" {
			mode = 0o700
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(w.Content), mode); err != nil {
			t.Fatal(err)
		}
	}
	if found != 3 {
		t.Fatalf("user-data has %d of the 3 self-join files", found)
	}
	return dir
}

// runJoinScript runs a Pi's provision-self-join inside its network
// namespace against its own dockerd, as its systemd unit would.
func runJoinScript(ctx context.Context, t *testing.T, f *labtest.Fixture, node, dir, python string, out io.Writer) error {
	n, ok := f.Node(node)
	if !ok {
		return fmt.Errorf("%s is not up", node)
	}
	// The script removes its config once joined; keep a copy for later.
	conf, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json.used"), conf, 0o600); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.Netns, "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"DOCKER_HOST=unix://"+n.DockerSocket, "PROVISION_JOIN_DIR="+dir, python, filepath.Join(dir, "provision-self-join"))
	cmd.Stdout, cmd.Stderr = out, out
	return cmd.Run()
}

// presentAgain posts a Pi's (used) ticket to the endpoint from inside its
// namespace, verifying the endpoint with the seed's CA, and prints the
// HTTP status and answer.
func presentAgain(ctx context.Context, f *labtest.Fixture, node, dir, python string, out io.Writer) error {
	n, _ := f.Node(node)
	const client = `import http.client, json, ssl, sys, urllib.parse
conf = json.load(open(sys.argv[1] + "/config.json.used"))
u = urllib.parse.urlsplit(conf["url"])
c = http.client.HTTPSConnection(u.hostname, u.port, context=ssl.create_default_context(cafile=sys.argv[1] + "/ca.crt"), timeout=30)
for i in range(50):
    try:
        c.request("POST", u.path, body=json.dumps({"node": conf["node"], "ticket": conf["ticket"]}))
        break
    except OSError:
        import time; time.sleep(0.2)
r = c.getresponse()
print(r.status, r.read().decode().strip())
`
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.Netns, python, "-c", client, dir)
	cmd.Stdout, cmd.Stderr = out, out
	return cmd.Run()
}

func runSelfJoinSwarm(t *testing.T, f *labtest.Fixture, inv *inventory.Inventory, status, logs io.Writer) (*swarm.Counter, string, error) {
	t.Helper()
	var out bytes.Buffer
	env := f.Env(t, inv, &out, status)
	env.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	counter := &swarm.Counter{}
	conn := stages.NewConnector(stages.SSH{KeyPath: f.KeyPath})
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	err := pipeline.Pipeline{Stages: []pipeline.Stage{stages.Swarm{SSH: conn, Counter: counter, SelfJoinWait: 4 * time.Minute}}}.Run(ctx, env)
	return counter, out.String(), err
}

func workerToken(t *testing.T, f *labtest.Fixture, manager string) string {
	t.Helper()
	n, _ := f.Node(manager)
	c, err := lab.NewEngine(n.DockerSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sw, err := c.SwarmInspect(context.Background())
	if err != nil || !strings.HasPrefix(sw.JoinTokens.Worker, "SWMTKN-") {
		t.Fatalf("swarm inspect on %s: %v", manager, err)
	}
	return sw.JoinTokens.Worker
}

// sjScan fails when a file under dir holds the token.
func sjScan(t *testing.T, dir, token string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(b, []byte(token)) || bytes.Contains(b, []byte("SWMTKN-")) {
			t.Errorf("%s holds a join token", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Errorf("nothing to scan in %s", dir)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
