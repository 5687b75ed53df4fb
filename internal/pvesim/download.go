package pvesim

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// loopbackDownload is the default Options.Download: an HTTP(S) GET that
// refuses any host but loopback, so tests never reach the internet.
func (s *Sim) loopbackDownload(ctx context.Context, rawURL string) (io.ReadCloser, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("invalid URL '%s': %w", rawURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("pvesim downloads only http(s) URLs, not '%s'", u.Scheme)
	}
	if !isLoopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("pvesim refuses to download from '%s': only loopback hosts (127.0.0.0/8, ::1, localhost) are allowed; set pvesim.Options.Download to fetch elsewhere", u.Hostname())
	}
	dialer := &net.Dialer{}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil || !isLoopbackHost(host) {
				return nil, fmt.Errorf("pvesim refuses to connect to %s: not loopback", addr)
			}
			return dialer.DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{InsecureSkipVerify: s.opts.InsecureDownloads}, //nolint:gosec // loopback test servers, opt-in
	}
	client := &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if !isLoopbackHost(req.URL.Hostname()) {
			return fmt.Errorf("pvesim refuses to follow a redirect to '%s': not loopback", req.URL.Hostname())
		}
		return nil
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		tr.CloseIdleConnections()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("download failed: %s", resp.Status)
	}
	return closeFunc{ReadCloser: resp.Body, after: tr.CloseIdleConnections}, nil
}

type closeFunc struct {
	io.ReadCloser
	after func()
}

func (c closeFunc) Close() error {
	err := c.ReadCloser.Close()
	c.after()
	return err
}

// fileBased reports whether a storage type has a path (dir-like).
func fileBased(typ string) bool {
	switch typ {
	case "dir", "nfs", "cifs", "cephfs", "glusterfs", "btrfs":
		return true
	}
	return false
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

var (
	reISOName    = regexp.MustCompile(`[^/]+\.(?i:iso|img)$`)
	reVZTmplName = regexp.MustCompile(`[^/]+\.(?i:tar|tar\.(?:gz|xz|zst|bz2))$`)
	reImportName = regexp.MustCompile(`[a-zA-Z0-9_.-]+\.(?:ova|qcow2|raw|vmdk)$`)
)

// postDownloadURL is POST /nodes/{node}/storage/{storage}/download-url:
// checks like pve-storage's Status.pm, then a task that fetches the URL,
// verifies the checksum and stores the volume.
func (s *Sim) postDownloadURL(r *request) (any, error) {
	node, storage := r.str("node"), r.str("storage")
	content, filename := r.str("content"), r.str("filename")
	s.mu.Lock()
	st, err := s.storageOnNodeLocked(node, storage)
	if err == nil && !fileBased(st.Type) {
		err = errf(http.StatusInternalServerError, "can't upload to storage type '%s', not a file based storage!", st.Type)
	}
	if err == nil && !slices.Contains(st.Content, content) {
		err = errf(http.StatusInternalServerError, "storage '%s' is not configured for content-type '%s'", storage, content)
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	// PVE::Storage::normalize_content_filename
	filename = strings.TrimRight(filename, "\n")
	if i := strings.LastIndexAny(filename, "/\\"); i >= 0 {
		filename = filename[i+1:]
	}
	filename = strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, filename)
	var dir string
	switch content {
	case "iso":
		if !reISOName.MatchString(filename) {
			return nil, paramErr1("filename", "wrong file extension")
		}
		dir = "iso"
	case "vztmpl":
		if !reVZTmplName.MatchString(filename) {
			return nil, paramErr1("filename", "wrong file extension")
		}
		dir = "vztmpl"
	case "import":
		if !reImportName.MatchString(filename) {
			return nil, paramErr1("filename", "invalid filename or wrong extension")
		}
		dir = "import"
	default:
		return nil, paramErr1("content", fmt.Sprintf("upload content-type '%s' is not allowed", content))
	}
	var newHash func() hash.Hash
	algo, sum := r.str("checksum-algorithm"), strings.ToLower(r.str("checksum"))
	switch algo {
	case "md5":
		newHash = md5.New
	case "sha1":
		newHash = sha1.New
	case "sha224":
		newHash = sha256.New224
	case "sha256":
		newHash = sha256.New
	case "sha384":
		newHash = sha512.New384
	case "sha512":
		newHash = sha512.New
	}
	volid := storage + ":" + dir + "/" + filename
	rawURL := r.str("url")
	return s.startTask(taskSpec{node: node, typ: "download", id: storage, user: r.authID,
		run: func(ctx context.Context, t *task) error {
			t.logf("downloading %s to %s", rawURL, volid)
			if u, err := url.Parse(rawURL); err == nil && !isLoopbackHost(u.Hostname()) && s.opts.PlaceholderDownloads {
				var size int64
				if strings.HasSuffix(filename, ".qcow2") {
					size = TemplateDisk
				}
				t.logf("pvesim placeholder: '%s' was not downloaded (offline rehearsal); checksum not verified", rawURL)
				s.mu.Lock()
				s.putVolume(node, storage, volid, size)
				s.mu.Unlock()
				return nil
			}
			body, err := s.opts.Download(ctx, rawURL)
			if err != nil {
				return fmt.Errorf("download failed: %w", err)
			}
			defer body.Close()
			var h hash.Hash
			if newHash != nil {
				h = newHash()
			}
			var head [32]byte
			n, size, err := countingCopy(body, h, head[:])
			if err != nil {
				return fmt.Errorf("download failed: %w", err)
			}
			t.logf("download of '%s' finished (%d bytes)", rawURL, size)
			if h != nil {
				got := hex.EncodeToString(h.Sum(nil))
				t.logf("calculating checksum...")
				if got != sum {
					return fmt.Errorf("checksum mismatch: got '%s' != expect '%s'", got, sum)
				}
				t.logf("checksum verified")
			}
			if content == "import" && strings.HasSuffix(filename, ".qcow2") {
				if n < 32 || string(head[:4]) != "QFI\xfb" {
					return fmt.Errorf("import volume '%s' is not a qcow2 image", volid)
				}
				size = int64(binary.BigEndian.Uint64(head[24:32])) // the image's virtual size
			}
			s.mu.Lock()
			s.putVolume(node, storage, volid, size)
			s.mu.Unlock()
			return nil
		}}), nil
}

// countingCopy reads everything, hashing it and keeping its first bytes.
func countingCopy(r io.Reader, h hash.Hash, head []byte) (int, int64, error) {
	var total int64
	headN := 0
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if headN < len(head) {
				headN += copy(head[headN:], buf[:n])
			}
			if h != nil {
				h.Write(buf[:n])
			}
			total += int64(n)
		}
		if err == io.EOF {
			return headN, total, nil
		}
		if err != nil {
			return headN, total, err
		}
	}
}
