package selfjoin

import (
	"crypto/tls"
	"crypto/x509"
)

func x509Opts(pool *x509.CertPool, name string) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: pool, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
}

func tlsConfig(pool *x509.CertPool) *tls.Config { return &tls.Config{RootCAs: pool} }
