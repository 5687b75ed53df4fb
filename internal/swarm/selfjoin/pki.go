package selfjoin

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// The files of the lab CA and the endpoint's certificate in the join
// directory. Keys are 0600; the directory is 0700.
const (
	CACertFile     = "ca.crt"
	caKeyFile      = "ca.key"
	serverCertFile = "server.crt"
	serverKeyFile  = "server.key"
)

const (
	caLifetime     = 10 * 365 * 24 * time.Hour
	serverLifetime = 365 * 24 * time.Hour
	// renewBefore: a server certificate this close to its end is replaced.
	renewBefore = 30 * 24 * time.Hour
)

// PKI is the lab CA's certificate (what seeds carry) and the join
// endpoint's certificate and key, signed by it.
type PKI struct {
	CACert []byte // PEM
	Server tls.Certificate
}

// EnsurePKI loads the lab CA and the server certificate from dir, making
// what is missing: the CA once, the server certificate when it is missing,
// does not name addr, or ends within 30 days. now is the current time.
func EnsurePKI(dir string, addr netip.Addr, now time.Time) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("join CA: %w", err)
	}
	unlock, err := lockFile(dir, "pki.lock")
	if err != nil {
		return nil, fmt.Errorf("join CA: %w", err)
	}
	defer unlock()
	caCert, caKey, caPEM, err := loadOrMakeCA(dir, now)
	if err != nil {
		return nil, fmt.Errorf("join CA in %s: %w", dir, err)
	}
	srv, err := loadServer(dir, caCert, addr, now)
	if err != nil {
		if srv, err = makeServer(dir, caCert, caKey, addr, now); err != nil {
			return nil, fmt.Errorf("join endpoint certificate in %s: %w", dir, err)
		}
	}
	return &PKI{CACert: caPEM, Server: srv}, nil
}

func loadOrMakeCA(dir string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	certPEM, cerr := os.ReadFile(filepath.Join(dir, CACertFile))
	keyPEM, kerr := os.ReadFile(filepath.Join(dir, caKeyFile))
	if errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist) {
		return makeCA(dir, now)
	}
	if cerr != nil {
		return nil, nil, nil, cerr
	}
	if kerr != nil {
		return nil, nil, nil, kerr
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s and %s: %w", CACertFile, caKeyFile, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, nil, fmt.Errorf("%s is not an ECDSA key", caKeyFile)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, nil, err
	}
	if !cert.IsCA {
		return nil, nil, nil, fmt.Errorf("%s is not a CA certificate", CACertFile)
	}
	return cert, key, certPEM, nil
}

func makeCA(dir string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "provision lab join CA", Organization: []string{"provision"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeKey(filepath.Join(dir, caKeyFile), key); err != nil {
		return nil, nil, nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, CACertFile), certPEM, 0o644); err != nil {
		return nil, nil, nil, err
	}
	return cert, key, certPEM, nil
}

// loadServer returns the server certificate when it is signed by ca, names
// addr and does not end within renewBefore.
func loadServer(dir string, ca *x509.Certificate, addr netip.Addr, now time.Time) (tls.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, serverCertFile), filepath.Join(dir, serverKeyFile))
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return tls.Certificate{}, err
	}
	if now.Add(renewBefore).After(cert.NotAfter) {
		return tls.Certificate{}, errors.New("ends soon")
	}
	if err := cert.VerifyHostname(addr.String()); err != nil {
		return tls.Certificate{}, err
	}
	pair.Leaf = cert
	return pair, nil
}

func makeServer(dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, addr netip.Addr, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "provision join endpoint " + addr.String()},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(serverLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IP(addr.AsSlice())},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := writeKey(filepath.Join(dir, serverKeyFile), key); err != nil {
		return tls.Certificate{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeFileAtomic(filepath.Join(dir, serverCertFile), certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(filepath.Join(dir, serverCertFile), filepath.Join(dir, serverKeyFile))
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// writeFileAtomic writes data to a temporary file of mode perm in path's
// directory and renames it over path.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// CertPool is a pool holding the CA certificate caPEM.
func CertPool(caPEM []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bytes.TrimSpace(caPEM)) {
		return nil, errors.New("no certificate in the CA PEM")
	}
	return pool, nil
}
