package mirror

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// Suite is the name of the repository's one suite; its component is main.
const Suite = "provision"

// Layout of a mirror directory: the served tree is Repo; the private key
// sits beside it, never under it.
const (
	RepoDir    = "repo"
	KeyFile    = "signing-key.asc" // private, 0600
	PublicKey  = "lab-archive-key.asc"
	cacheDir   = "repacked"
	repoPrefix = "pool/main"
)

// Config says what to put into a mirror.
type Config struct {
	Dir      string   // the mirror directory (made when missing)
	Lab      string   // the lab's name, for the key and Release
	Packages []string // wanted packages; their dependencies come along
	Archs    []string // Debian architectures
	DebDirs  []string // directories of .deb files to take packages from
	// FromInstalled takes packages installed on this machine (repacked
	// with dpkg-repack) for its own architecture, when no .deb has them.
	FromInstalled bool
	StatusFile    string // dpkg's status file; /var/lib/dpkg/status by default
	// RepackCache keeps repacked packages between builds (default
	// <Dir>/repacked).
	RepackCache string
	NativeArch  string // this machine's architecture (dpkg --print-architecture)
	Now         func() time.Time
}

// Summary is what a build made.
type Summary struct {
	Packages   map[string][]string // arch → package_version
	KeyCreated bool
	Repo       string
}

// Build resolves the packages for every architecture, copies the .debs
// into pool/, writes Packages, Release and the signed InRelease, and the
// public key. A package no source has is an error naming who needs it;
// nothing in the repository changes then.
func Build(ctx context.Context, cfg Config) (*Summary, error) {
	if cfg.StatusFile == "" {
		cfg.StatusFile = "/var/lib/dpkg/status"
	}
	var cands []*Candidate
	for _, d := range cfg.DebDirs {
		cs, err := DebDir(ctx, d)
		if err != nil {
			return nil, err
		}
		cands = append(cands, cs...)
	}
	if cfg.FromInstalled {
		cs, err := Installed(cfg.StatusFile)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			if a := c.Arch(); a == cfg.NativeArch || a == "all" {
				cands = append(cands, c)
			}
		}
	}
	sum := &Summary{Packages: map[string][]string{}, Repo: filepath.Join(cfg.Dir, RepoDir)}
	closures := map[string][]*Candidate{}
	var errs []string
	for _, arch := range cfg.Archs {
		cl, err := NewPool(arch, cands).Closure(cfg.Packages)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		closures[arch] = cl
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("mirror: %s", strings.Join(errs, "; "))
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	if cfg.RepackCache == "" {
		cfg.RepackCache = filepath.Join(cfg.Dir, cacheDir)
	}
	if err := os.MkdirAll(cfg.RepackCache, 0o755); err != nil {
		return nil, err
	}
	staging, err := os.MkdirTemp(cfg.Dir, ".build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(staging)
	pool := filepath.Join(staging, repoPrefix)
	if err := os.MkdirAll(pool, 0o755); err != nil {
		return nil, err
	}
	index := map[string]*bytes.Buffer{}
	for _, arch := range cfg.Archs {
		index[arch] = &bytes.Buffer{}
		for _, c := range closures[arch] {
			if c.Deb == "" {
				deb, err := repack(ctx, c, cfg.RepackCache)
				if err != nil {
					return nil, err
				}
				c.Deb = deb
			}
			entry, err := addToPool(c, pool)
			if err != nil {
				return nil, err
			}
			entry.Write(index[arch])
			index[arch].WriteString("\n")
			sum.Packages[arch] = append(sum.Packages[arch], c.Name()+"_"+c.Version())
		}
	}
	key, created, err := signingKey(filepath.Join(cfg.Dir, KeyFile), cfg.Lab)
	if err != nil {
		return nil, err
	}
	sum.KeyCreated = created
	if err := writeDists(staging, cfg, index, key); err != nil {
		return nil, err
	}
	pub, err := publicKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(staging, PublicKey), pub, 0o644); err != nil {
		return nil, err
	}
	// Swap the new tree in whole: a client never sees half a repository.
	repo := filepath.Join(cfg.Dir, RepoDir)
	old := repo + ".old"
	_ = os.RemoveAll(old)
	if err := os.Rename(repo, old); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	if err := os.Chmod(staging, 0o755); err != nil {
		return nil, err
	}
	if err := os.Rename(staging, repo); err != nil {
		return nil, err
	}
	_ = os.RemoveAll(old)
	return sum, nil
}

// addToPool links (or copies) the .deb into the pool and returns its
// Packages entry.
func addToPool(c *Candidate, pool string) (*Stanza, error) {
	name := fmt.Sprintf("%s_%s_%s.deb", c.Name(), strings.ReplaceAll(c.Version(), ":", "%3a"), c.Arch())
	dest := filepath.Join(pool, name)
	if _, err := os.Stat(dest); err != nil {
		if err := os.Link(c.Deb, dest); err != nil {
			if err := copyFile(c.Deb, dest); err != nil {
				return nil, fmt.Errorf("add %s to the pool: %w", c.Deb, err)
			}
		}
	}
	data, err := os.ReadFile(dest)
	if err != nil {
		return nil, err
	}
	md := md5.Sum(data)
	sh := sha256.Sum256(data)
	e := &Stanza{}
	for _, k := range c.Control.keys {
		switch k {
		case "Status", "Config-Version", "Conffiles":
			continue // dpkg status fields, not index fields
		}
		e.Set(k, c.Control.fields[k])
	}
	e.Set("Filename", repoPrefix+"/"+name)
	e.Set("Size", fmt.Sprint(len(data)))
	e.Set("MD5sum", hex.EncodeToString(md[:]))
	e.Set("SHA256", hex.EncodeToString(sh[:]))
	return e, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// writeDists writes dists/<suite>/main/binary-<arch>/Packages{,.gz},
// Release and the signed InRelease.
func writeDists(root string, cfg Config, index map[string]*bytes.Buffer, key *openpgp.Entity) error {
	dist := filepath.Join(root, "dists", Suite)
	type indexFile struct {
		rel  string
		data []byte
	}
	var files []indexFile
	archs := append([]string(nil), cfg.Archs...)
	sort.Strings(archs)
	for _, arch := range archs {
		rel := "main/binary-" + arch + "/Packages"
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		zw.Write(index[arch].Bytes())
		zw.Close()
		files = append(files, indexFile{rel, index[arch].Bytes()}, indexFile{rel + ".gz", gz.Bytes()})
	}
	var rel bytes.Buffer
	now := time.Now
	if cfg.Now != nil {
		now = cfg.Now
	}
	fmt.Fprintf(&rel, "Origin: provision\nLabel: %s\nSuite: %s\nCodename: %s\nDate: %s\nArchitectures: %s\nComponents: main\nDescription: the packages of lab %s\nSHA256:\n",
		cfg.Lab, Suite, Suite, now().UTC().Format(time.RFC1123Z), strings.Join(archs, " "), cfg.Lab)
	for _, f := range files {
		h := sha256.Sum256(f.data)
		fmt.Fprintf(&rel, " %s %d %s\n", hex.EncodeToString(h[:]), len(f.data), f.rel)
		p := filepath.Join(dist, f.rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return err
		}
	}
	in, err := clearsignRelease(key, rel.Bytes())
	if err != nil {
		return fmt.Errorf("sign Release: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dist, "Release"), rel.Bytes(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dist, "InRelease"), in, 0o644)
}
