package agent

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func TestSpoolPutRemoveReopen(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	s, err := openSpool(dir, 1000, log)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b/../../c", "a"} {
		if err := s.put(id, []byte("result "+id)); err != nil {
			t.Fatalf("put %q: %v", id, err)
		}
	}
	if n, _ := s.stats(); n != 2 {
		t.Fatalf("count = %d, want 2 (a replaced)", n)
	}
	if !s.has("b/../../c") {
		t.Fatal("job ID with path characters not stored")
	}
	// A temp file from an interrupted write is cleaned up on open.
	if err := os.WriteFile(filepath.Join(dir, "put-123"+tempExt), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := openSpool(dir, 1000, log)
	if err != nil {
		t.Fatal(err)
	}
	names := s2.names()
	if len(names) != 2 || names[0] != fileName("b/../../c") || names[1] != fileName("a") {
		t.Fatalf("reopened order = %v", names)
	}
	if data, err := s2.read(fileName("a")); err != nil || string(data) != "result a" {
		t.Fatalf("read = %q, %v", data, err)
	}
	s2.remove("a")
	s2.remove("never-stored")
	if _, err := s2.read(fileName("a")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read after remove: %v", err)
	}
	des, _ := os.ReadDir(dir)
	if len(des) != 1 {
		t.Fatalf("files left = %d, want 1", len(des))
	}
}

func TestSpoolBoundDropsOldest(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, 100, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	block := bytes.Repeat([]byte("x"), 40)
	for _, id := range []string{"1", "2", "3", "4"} {
		if err := s.put(id, block); err != nil {
			t.Fatal(err)
		}
	}
	n, size := s.stats()
	if n != 2 || size != 80 || s.has("1") || s.has("2") || !s.has("3") || !s.has("4") {
		t.Fatalf("after overflow: %d results, %d bytes; want the newest two", n, size)
	}
	if des, _ := os.ReadDir(dir); len(des) != 2 {
		t.Fatalf("files on disk = %d, want 2", len(des))
	}
	if err := s.put("huge", bytes.Repeat([]byte("x"), 101)); !errors.Is(err, errTooLarge) {
		t.Fatalf("put larger than the spool = %v, want errTooLarge", err)
	}
	// Reopening with a smaller bound trims the oldest.
	s2, err := openSpool(dir, 50, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if s2.has("3") || !s2.has("4") {
		t.Fatal("reopen with a smaller bound kept the wrong result")
	}
}

func TestSpoolUnwritableDirectory(t *testing.T) {
	if os.Getuid() == 0 {
		t.Skip("root writes anywhere")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	if _, err := openSpool(dir, 100, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("want an error for a read-only spool directory")
	}
}
