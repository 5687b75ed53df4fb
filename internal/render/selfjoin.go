package render

// JoinSeed is what the seed of a node that joins the swarm by itself
// (pis.racks[].join: self) carries: the join endpoint's URL, the node's
// single-use ticket and the lab CA that signed the endpoint's certificate.
// Never a join token.
type JoinSeed struct {
	Node   string
	URL    string
	Ticket string
	CACert string // PEM
}

// SeedFile is one file a seed writes onto the node.
type SeedFile struct {
	Path    string
	Mode    string // octal, "0600"
	Content string
}

// The files a self-joining node gets, besides its ticket in JoinConfigPath.
const (
	JoinConfigPath = "/etc/provision/join/config.json"
	JoinCAPath     = "/etc/provision/join/ca.crt"
	JoinScriptPath = "/usr/local/sbin/provision-self-join"
	JoinUnitPath   = "/etc/systemd/system/provision-self-join.service"
)

// JoinFiles renders the files of d.Join: the config with the ticket
// (0600), the CA certificate, the provision-self-join script and its
// systemd unit (from templates/cloud-init/files/provision-self-join*). It
// returns nil when d.Join is nil.
func (r *Renderer) JoinFiles(d *Data) ([]SeedFile, error) {
	if d.Join == nil {
		return nil, nil
	}
	conf, err := toJSON(map[string]string{"node": d.Join.Node, "url": d.Join.URL, "ticket": d.Join.Ticket})
	if err != nil {
		return nil, err
	}
	script, err := r.execute("files/provision-self-join", d)
	if err != nil {
		return nil, err
	}
	unit, err := r.execute("files/provision-self-join.service", d)
	if err != nil {
		return nil, err
	}
	return []SeedFile{
		{Path: JoinConfigPath, Mode: "0600", Content: conf + "\n"},
		{Path: JoinCAPath, Mode: "0644", Content: d.Join.CACert},
		{Path: JoinScriptPath, Mode: "0755", Content: string(script)},
		{Path: JoinUnitPath, Mode: "0644", Content: string(unit)},
	}, nil
}
