package mirror

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// signingKey loads the lab's repository key from path, or makes one (RSA
// 3072, written 0600) when there is none.
func signingKey(path, lab string) (*openpgp.Entity, bool, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
		if err != nil || len(el) != 1 || el[0].PrivateKey == nil {
			return nil, false, fmt.Errorf("signing key %s: not one armoured private key", path)
		}
		return el[0], false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("signing key: %w", err)
	}
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 3072, DefaultHash: crypto.SHA256}
	e, err := openpgp.NewEntity("provision lab mirror "+lab, "", "", cfg)
	if err != nil {
		return nil, false, fmt.Errorf("make signing key: %w", err)
	}
	var b bytes.Buffer
	w, err := armor.Encode(&b, openpgp.PrivateKeyType, nil)
	if err == nil {
		err = e.SerializePrivate(w, cfg)
	}
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = os.WriteFile(path, b.Bytes(), 0o600)
	}
	if err != nil {
		return nil, false, fmt.Errorf("write signing key %s: %w", path, err)
	}
	return e, true, nil
}

// publicKey is the key apt checks InRelease with, armoured.
func publicKey(e *openpgp.Entity) ([]byte, error) {
	var b bytes.Buffer
	w, err := armor.Encode(&b, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, err
	}
	if err := e.Serialize(w); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// clearsignRelease makes InRelease from Release.
func clearsignRelease(e *openpgp.Entity, release []byte) ([]byte, error) {
	var b bytes.Buffer
	w, err := clearsign.Encode(&b, e.PrivateKey, &packet.Config{DefaultHash: crypto.SHA256})
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(release); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
