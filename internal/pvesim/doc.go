// Package pvesim is a Proxmox VE 9.1 API simulator for tests and local
// rehearsal: it keeps a cluster's state (nodes, storages and their
// volumes, VMs and templates, tasks, users, tokens and ACLs) and answers
// /api2/json requests the way PVE does.
//
// Strict like PVE: every request's method, path and parameters are
// checked against PVE's own API schema (embedded, pve-api-schema.json.gz)
// with PVE::JSONSchema's rules and messages, in PVE's order: auth,
// routing ("501 Method 'GET /x' not implemented"), URI parameters,
// token allowance, the method's permission check ("403 Permission check
// failed (/vms/100, VM.Clone)"), the proxy to the node ("595 No route to
// host" for an offline node), then "400 Parameter verification failed."
// with an errors map. Schema paths the simulator does not implement
// answer 501 "... not implemented by the simulator", never a fake success.
//
// Transport like pve-http-server: {"data": ...} envelopes; errors through
// a hijacked HTTP/1.1 connection so the status line carries PVE's message
// ("HTTP/1.1 500 no such resource 'vm:101'"), body
// {"data":null,"message":"...\n"[,"errors":{...}]} and Connection: close.
// 401 answers carry no body, as in PVE ("401 No ticket" without
// credentials, "401 Authentication failed!" for a wrong token, PVE ≥ 9.1.5
// wording). Control characters in a status line (which can come from the
// URL) are sent as \xNN. A body over pve-http-server's limit (512 KiB) is
// refused like pveproxy does, "501 for data too large", before it is read
// when its length is announced. Listen serves HTTPS with a generated CA
// (Server.CAFile) and HTTP/2 off, or plain HTTP; a client that takes longer
// than Options.ReadTimeout to send a request, or idles longer than
// IdleTimeout, is disconnected.
//
// Use from tests:
//
//	sim, _ := pvesim.New(pvesim.Options{})
//	defer sim.Close()
//	sim.AddNode("pve1", true)
//	sim.AddStorage(pvesim.Storage{ID: "local-lvm", Type: "lvmthin", Content: []string{"images"}, Total: 100 << 30})
//	sim.AddUser("tf@pve", map[string][]string{"/": {"VM.Audit"}})
//	sim.AddToken("tf@pve!ci", secret, false, nil)
//	srv, _ := sim.Listen(ctx, "127.0.0.1:0", true)
//	defer srv.Close()
//	// srv.URL ends in /api2/json; trust srv.CAFile.
//
// or SeedFromInventory for a whole lab. Tasks finish before the POST
// answers unless Options.TaskDuration is set; FailNextTask makes one fail.
// ACLs map a path to privileges and propagate to sub-paths, the deepest
// path wins (no roles). Privilege-separated tokens get the intersection
// of their user's and their own privileges. root@pam has every privilege.
//
// API beyond the brief's names (all documented at their declarations):
// Options.LockTimeout, AuthFailureDelay, Agent (agent answers),
// PlaceholderDownloads, InsecureDownloads; Sim.Close, Listen (Server also
// has CAPEM and Addr), SetPassword (ticket login), SetNextIDRange,
// SetStorageContent, SetNodeDir, SnippetsDir, VM, Volumes, Snapshot/Restore (state without
// secrets); Seed with SeedOptions (privsep token, SkipTemplates),
// AddTemplate, TemplateConfig, LabTokenPrivileges(), TemplateVMIDBase.
//
// Deliberate PVE behaviours worth knowing: a template's clone is linked
// unless full=1; creating an existing VMID fails with "unable to create VM
// N - VM N already exists on node 'X'" while cloning onto one fails with
// "unable to create VM N: config file already exists"; empty urlencoded
// values ("k=") count as absent and a pair keeps only its first two
// "="-separated fields, as PVE's decode_urlencoded does; permission
// checks run before parameter checks, and the proxy to the node before
// both, so a bad node name in the path is "500 hostname lookup ...".
// A VM with its cloud-init drive starts only when its cicustom snippets
// can be read (PVE regenerates the cloud-init ISO at every start): known
// to the Sim (AddVolume) or files under the node's directory (SetNodeDir,
// where StartSSHD's SFTP uploads land); else the start task fails with
// pve-storage's "can't find file 'local:snippets/x.yaml'".
// PVE 9 wants VM.GuestAgent.Audit for agent calls, which the Telmate
// provider's minimum privilege set lacks.
//
// StartSSHD gives a simulated host an SFTP endpoint: a real OpenSSH sshd
// on a loopback port, SFTP only, chrooted into the node's directory, so
// snippets uploaded to /var/lib/vz/snippets are what its VMs' starts read.
//
// The Sim never logs token secrets and never contacts a non-loopback
// host: download-url fetches only from 127.0.0.0/8, ::1 and localhost
// unless Options.Download is replaced.
package pvesim
