package secret

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func newBox(t *testing.T) *Box {
	t.Helper()
	key, err := ParseKey(NewKey())
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	b := newBox(t)
	for _, plain := range [][]byte{nil, []byte(""), []byte(`{"password":"hunter2"}`), bytes.Repeat([]byte{0xff}, 10000)} {
		sealed, err := b.Seal(plain)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(sealed, "v1:") {
			t.Errorf("sealed %q lacks the version prefix", sealed)
		}
		if len(plain) > 0 && strings.Contains(sealed, string(plain)) {
			t.Errorf("sealed value contains the plaintext")
		}
		got, err := b.Open(sealed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, plain) {
			t.Errorf("open = %q, want %q", got, plain)
		}
	}
	// A fresh nonce each time: the same secret never seals the same.
	a, _ := b.Seal([]byte("same"))
	c, _ := b.Seal([]byte("same"))
	if a == c {
		t.Error("two seals of the same plaintext are equal")
	}
}

func TestOpenRejects(t *testing.T) {
	b := newBox(t)
	sealed, err := b.Seal([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sealed, "v1:"))
	flip := func(i int) string {
		c := bytes.Clone(raw)
		c[i] ^= 1
		return "v1:" + base64.StdEncoding.EncodeToString(c)
	}
	cases := map[string]string{
		"empty":           "",
		"no prefix":       strings.TrimPrefix(sealed, "v1:"),
		"other version":   "v2:" + strings.TrimPrefix(sealed, "v1:"),
		"not base64":      "v1:!!!",
		"too short":       "v1:" + base64.StdEncoding.EncodeToString(raw[:10]),
		"nonce tampered":  flip(0),
		"cipher tampered": flip(len(raw) - 1),
		"truncated":       "v1:" + base64.StdEncoding.EncodeToString(raw[:len(raw)-1]),
		"plaintext":       `{"password":"x"}`,
	}
	for name, s := range cases {
		if _, err := b.Open(s); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: err %v, want ErrOpen", name, err)
		}
	}
	if _, err := newBox(t).Open(sealed); !errors.Is(err, ErrOpen) {
		t.Errorf("wrong key: err %v, want ErrOpen", err)
	}
	var nilBox *Box
	if _, err := nilBox.Open(sealed); err == nil {
		t.Error("nil box opened")
	}
	if _, err := nilBox.Seal([]byte("x")); err == nil {
		t.Error("nil box sealed")
	}
}

func TestKeys(t *testing.T) {
	if _, err := New(make([]byte, 16)); err == nil {
		t.Error("New accepted a 16-byte key")
	}
	key := bytes.Repeat([]byte{7}, 32)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		got, err := ParseKey(" " + enc.EncodeToString(key) + "\n")
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("ParseKey: %x %v", got, err)
		}
	}
	for _, bad := range []string{"", "   ", "not base64 at all!", base64.StdEncoding.EncodeToString(make([]byte, 31))} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
	// An explicit key wins over the file, which is then not created.
	path := filepath.Join(t.TempDir(), "key")
	b, err := LoadOrCreate(base64.StdEncoding.EncodeToString(key), path)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := New(key)
	sealed, _ := want.Seal([]byte("x"))
	if _, err := b.Open(sealed); err != nil {
		t.Errorf("explicit key not used: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("key file created despite an explicit key: %v", err)
	}
	if _, err := LoadOrCreate("short", path); err == nil {
		t.Error("bad explicit key accepted")
	}
	if _, err := LoadOrCreate("", ""); err == nil {
		t.Error("no key and no path accepted")
	}
}

func TestLoadOrCreateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "secret.key")
	b1, err := LoadOrCreate("", path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	content, _ := os.ReadFile(path)
	if _, err := ParseKey(string(content)); err != nil {
		t.Errorf("key file content: %v", err)
	}
	sealed, _ := b1.Seal([]byte("kept"))

	// Reused, not overwritten.
	b2, err := LoadOrCreate("", path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b2.Open(sealed); err != nil || string(got) != "kept" {
		t.Errorf("second load: %q %v", got, err)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, content) {
		t.Error("key file changed on the second load")
	}
	// No temporary files left behind.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key", len(entries))
	}

	// A damaged key file is an error, never replaced.
	bad := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(bad, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate("", bad); err == nil {
		t.Error("damaged key file accepted")
	}
	if got, _ := os.ReadFile(bad); string(got) != "garbage\n" {
		t.Error("damaged key file was overwritten")
	}
}

// Processes starting together agree on one key.
func TestLoadOrCreateRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret.key")
	const n = 16
	boxes := make([]*Box, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			b, err := LoadOrCreate("", path)
			if err != nil {
				t.Error(err)
			}
			boxes[i] = b
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	sealed, _ := boxes[0].Seal([]byte("shared"))
	for i, b := range boxes {
		if _, err := b.Open(sealed); err != nil {
			t.Errorf("box %d has another key", i)
		}
	}
}
