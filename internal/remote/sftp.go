package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/pkg/sftp"
)

// File is one file to put on a node.
type File struct {
	Name    string // base name inside the target directory
	Content []byte
	Mode    os.FileMode // permission bits; 0 means 0600
}

// UploadResult says what an upload did, by file name.
type UploadResult struct {
	Written   []string // new or changed, replaced atomically
	Unchanged []string // already there with the same content and mode
}

// UploadOptions tune Upload; the zero value is the normal behaviour.
type UploadOptions struct {
	// BeforeRename, when set, runs after a file's new content is complete
	// under its temporary name and before it is renamed over the old one
	// (tests check that nothing partial is ever visible). An error aborts
	// the upload of that file; the temporary file is removed.
	BeforeRename func(tmp, final string) error
}

// Upload writes files into dir on the node over SFTP (the server's sftp
// subsystem, on this connection, so its host key was checked like any
// other). A file whose content and mode are already right is left alone.
// Any other is written under a temporary name in dir, given its mode, and
// renamed over the old one (posix-rename): readers see the old content or
// the new, never a part. dir is created when missing.
func (c *Client) Upload(ctx context.Context, dir string, files []File, opts UploadOptions) (UploadResult, error) {
	var res UploadResult
	err := c.withSFTP(ctx, "upload", dir, func(sc *sftp.Client) (string, error) {
		if err := sc.MkdirAll(dir); err != nil {
			return "", fmt.Errorf("create directory: %w", err)
		}
		for _, f := range files {
			if err := plainName(f.Name); err != nil {
				return f.Name, err
			}
			mode := f.Mode.Perm()
			if mode == 0 {
				mode = 0o600
			}
			final := path.Join(dir, f.Name)
			same, err := sameFile(sc, final, f.Content, mode)
			if err != nil {
				return f.Name, err
			}
			if same {
				res.Unchanged = append(res.Unchanged, f.Name)
				continue
			}
			if err := replaceFile(sc, dir, final, f.Content, mode, opts.BeforeRename); err != nil {
				return f.Name, err
			}
			res.Written = append(res.Written, f.Name)
		}
		return "", nil
	})
	return res, err
}

// RemoveResult says what a Remove did, by file name.
type RemoveResult struct {
	Removed []string
	Absent  []string // not there (removed before, or never written)
}

// Remove deletes the named files from dir over SFTP; a file that is not
// there is no error. Only plain files are removed: a name that is a
// directory or a link fails.
func (c *Client) Remove(ctx context.Context, dir string, names []string) (RemoveResult, error) {
	var res RemoveResult
	err := c.withSFTP(ctx, "remove", dir, func(sc *sftp.Client) (string, error) {
		for _, name := range names {
			if err := plainName(name); err != nil {
				return name, err
			}
			p := path.Join(dir, name)
			fi, err := sc.Lstat(p)
			if errors.Is(err, fs.ErrNotExist) {
				res.Absent = append(res.Absent, name)
				continue
			}
			if err != nil {
				return name, fmt.Errorf("stat: %w", err)
			}
			if !fi.Mode().IsRegular() {
				return name, fmt.Errorf("not a regular file (%s): left alone", fi.Mode())
			}
			if err := sc.Remove(p); err != nil {
				return name, err
			}
			res.Removed = append(res.Removed, name)
		}
		return "", nil
	})
	return res, err
}

// withSFTP runs fn with an SFTP client on this connection (the server's
// sftp subsystem), closed when ctx ends: SFTP calls take no context. fn
// returns the file it failed on; the error names the node, what was done
// and that file.
func (c *Client) withSFTP(ctx context.Context, what, dir string, fn func(sc *sftp.Client) (string, error)) error {
	fail := func(name string, err error) error {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return fmt.Errorf("sftp %s: %s %s: %w", c.target, what, path.Join(dir, name), err)
	}
	if err := ctx.Err(); err != nil {
		return fail("", err)
	}
	sc, err := sftp.NewClient(c.conn)
	if err != nil {
		return fail("", fmt.Errorf("start the sftp subsystem: %w", err))
	}
	defer sc.Close()
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	defer stop()
	if name, err := fn(sc); err != nil {
		return fail(name, err)
	}
	return nil
}

// plainName refuses a file name that is not a plain name in its directory.
func plainName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return errors.New("not a plain file name")
	}
	return nil
}

// sameFile reports whether path holds exactly content with mode.
func sameFile(sc *sftp.Client, p string, content []byte, mode os.FileMode) (bool, error) {
	fi, err := sc.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("exists and is not a regular file (%s)", fi.Mode())
	}
	if fi.Size() != int64(len(content)) || fi.Mode().Perm() != mode {
		return false, nil
	}
	rf, err := sc.Open(p)
	if err != nil {
		return false, fmt.Errorf("read back: %w", err)
	}
	defer rf.Close()
	old, err := io.ReadAll(io.LimitReader(rf, int64(len(content))+1))
	if err != nil {
		return false, fmt.Errorf("read back: %w", err)
	}
	return bytes.Equal(old, content), nil
}

// replaceFile writes content to a fresh temporary file in dir and renames
// it over final.
func replaceFile(sc *sftp.Client, dir, final string, content []byte, mode os.FileMode, beforeRename func(tmp, final string) error) (err error) {
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := path.Join(dir, "."+path.Base(final)+".tmp-"+hex.EncodeToString(rnd[:]))
	wf, err := sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			wf.Close()
			sc.Remove(tmp)
		}
	}()
	// Mode first: the content is never readable by more than it should be.
	if err := wf.Chmod(mode); err != nil {
		return fmt.Errorf("chmod temporary file: %w", err)
	}
	if _, err := wf.Write(content); err != nil {
		return fmt.Errorf("write temporary file: %w", err)
	}
	if err := wf.Close(); err != nil {
		return fmt.Errorf("close temporary file: %w", err)
	}
	if beforeRename != nil {
		if err := beforeRename(tmp, final); err != nil {
			return err
		}
	}
	if err := sc.PosixRename(tmp, final); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	return nil
}
