// Package secret seals small secrets (channel passwords, webhook URLs) for
// storage: AES-256-GCM under one server key, so a copy of the database
// alone does not reveal them.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// KeySize is the key length: AES-256.
const KeySize = 32

// prefix versions the sealed format, so a later scheme can be told apart
// from this one.
const prefix = "v1:"

// ErrOpen is returned by Open for anything it cannot open: a wrong key,
// tampered data or a string that was never sealed. The reasons are not
// told apart on purpose; callers cannot act on the difference.
var ErrOpen = errors.New("secret: cannot open sealed value (wrong key, damaged or not sealed)")

// Box seals and opens with one key. It is safe for concurrent use.
type Box struct {
	aead cipher.AEAD
}

// New returns a Box for a 32-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secret: key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	return &Box{aead: aead}, nil
}

// ParseKey decodes a base64 key (standard or URL alphabet, padded or
// not) of 32 bytes. The key itself never appears in its errors.
func ParseKey(b64 string) ([]byte, error) {
	s := strings.TrimSpace(b64)
	if s == "" {
		return nil, errors.New("secret: empty key")
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		key, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("secret: key decodes to %d bytes, want %d (generate one with: openssl rand -base64 32)", len(key), KeySize)
		}
		return key, nil
	}
	return nil, errors.New("secret: key is not base64 (generate one with: openssl rand -base64 32)")
}

// NewKey returns a random key, base64 encoded.
func NewKey() string {
	// crypto/rand.Read never fails (it crashes the program instead).
	key := make([]byte, KeySize)
	_, _ = rand.Read(key)
	return base64.StdEncoding.EncodeToString(key)
}

// LoadOrCreate returns the Box of keyB64 when it is set. Otherwise it
// reads the key from the file at path, creating the file with a new
// random key (mode 0600) when it does not exist yet. Two processes
// starting together end up with the same key: the file appears complete
// or not at all, and the first one to create it wins.
func LoadOrCreate(keyB64, path string) (*Box, error) {
	if strings.TrimSpace(keyB64) != "" {
		key, err := ParseKey(keyB64)
		if err != nil {
			return nil, err
		}
		return New(key)
	}
	if path == "" {
		return nil, errors.New("secret: no key and no key file")
	}
	key, err := readKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createKeyFile(path); err != nil {
			return nil, err
		}
		key, err = readKeyFile(path)
	}
	if err != nil {
		return nil, err
	}
	return New(key)
}

// readKeyFile reads a key file. An empty file is another process between
// creating and writing it (only on file systems without hard links, see
// createKeyFile), so it is read again for a moment before giving up.
func readKeyFile(path string) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("secret: read key file: %w", err)
		}
		if len(strings.TrimSpace(string(b))) == 0 && attempt < 20 {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		key, err := ParseKey(string(b))
		if err != nil {
			return nil, fmt.Errorf("secret: key file %s: %w", path, err)
		}
		return key, nil
	}
}

// createKeyFile writes a new key to a temporary file, then links it into
// place. Unlike a rename, a link never replaces an existing file, so a
// process that loses the race keeps the winner's key (it reads it next);
// and unlike writing in place, nobody sees a half-written key.
func createKeyFile(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("secret: create key directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".secret-key-*")
	if err != nil {
		return fmt.Errorf("secret: create key file: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := writeKey(tmp); err != nil {
		return fmt.Errorf("secret: write key file: %w", err)
	}
	err = os.Link(tmpName, path)
	switch {
	case err == nil, errors.Is(err, fs.ErrExist):
		return nil
	}
	// No hard links here (some network and FUSE file systems): create
	// exclusively and write in place; readers wait for the content.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("secret: create key file: %w", err)
	}
	if err := writeKey(f); err != nil {
		os.Remove(path)
		return fmt.Errorf("secret: write key file: %w", err)
	}
	return nil
}

// writeKey writes a new key to f, syncs and closes it.
func writeKey(f *os.File) error {
	// CreateTemp makes 0600 already; Chmod covers a umask-free platform.
	if err := f.Chmod(0o600); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		f.Close()
		return err
	}
	if _, err := f.WriteString(NewKey() + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Seal encrypts plain with a fresh random nonce: "v1:" followed by the
// base64 of nonce and ciphertext.
func (b *Box) Seal(plain []byte) (string, error) {
	if b == nil || b.aead == nil {
		return "", errors.New("secret: no key")
	}
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(plain)+b.aead.Overhead())
	_, _ = rand.Read(nonce)
	out := b.aead.Seal(nonce, nonce, plain, []byte(prefix))
	return prefix + base64.StdEncoding.EncodeToString(out), nil
}

// Open decrypts what Seal returned; ErrOpen for anything else.
func (b *Box) Open(sealed string) ([]byte, error) {
	if b == nil || b.aead == nil {
		return nil, errors.New("secret: no key")
	}
	rest, ok := strings.CutPrefix(sealed, prefix)
	if !ok {
		return nil, ErrOpen
	}
	raw, err := base64.StdEncoding.DecodeString(rest)
	if err != nil || len(raw) < b.aead.NonceSize()+b.aead.Overhead() {
		return nil, ErrOpen
	}
	n := b.aead.NonceSize()
	plain, err := b.aead.Open(nil, raw[:n], raw[n:], []byte(prefix))
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}
