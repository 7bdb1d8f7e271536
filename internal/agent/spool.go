package agent

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// errTooLarge: a result bigger than the whole spool is sent but not kept.
var errTooLarge = errors.New("result larger than the spool")

// spool keeps encoded result messages on disk, one file per job ID, until
// the server acknowledges them. It is bounded in bytes: when full, the
// oldest results are dropped (the server's lease on those jobs expires and
// it schedules them again).
type spool struct {
	dir string
	max int64
	log *slog.Logger

	mu      sync.Mutex
	entries map[string]spoolEntry // by file name
	total   int64
	seq     uint64
	stamp   time.Time // last modification time given to a file
}

type spoolEntry struct {
	size int64
	seq  uint64
}

const (
	spoolExt = ".result"
	tempExt  = ".tmp"
)

// openSpool creates dir if needed, removes temp files an interrupted write
// left behind and indexes the results already there, oldest first.
func openSpool(dir string, maxBytes int64, log *slog.Logger) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool directory: %w", err)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool directory: %w", err)
	}
	type found struct {
		name string
		size int64
		mod  int64
	}
	var files []found
	for _, de := range des {
		name := de.Name()
		switch {
		case strings.HasSuffix(name, tempExt):
			_ = os.Remove(filepath.Join(dir, name))
		case strings.HasSuffix(name, spoolExt) && de.Type().IsRegular():
			info, err := de.Info()
			if err != nil {
				continue
			}
			files = append(files, found{name, info.Size(), info.ModTime().UnixNano()})
		}
	}
	slices.SortFunc(files, func(a, b found) int {
		return cmp.Or(cmp.Compare(a.mod, b.mod), strings.Compare(a.name, b.name))
	})
	s := &spool{dir: dir, max: maxBytes, log: log, entries: make(map[string]spoolEntry, len(files))}
	// A write probe now turns a read-only directory into a startup error
	// rather than a silent loss of every result later.
	probe, err := os.CreateTemp(dir, "probe-*"+tempExt)
	if err != nil {
		return nil, fmt.Errorf("spool directory not writable: %w", err)
	}
	probe.Close()
	_ = os.Remove(probe.Name())

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range files {
		s.stamp = time.Unix(0, max(s.stamp.UnixNano(), f.mod))
		s.seq++
		s.entries[f.name] = spoolEntry{size: f.size, seq: s.seq}
		s.total += f.size
	}
	s.evictLocked(0, "")
	return s, nil
}

// fileName maps a job ID (chosen by the server, any bytes) to a safe name.
func fileName(jobID string) string {
	h := sha256.Sum256([]byte(jobID))
	return hex.EncodeToString(h[:16]) + spoolExt
}

// put stores data for jobID durably: temp file, fsync, rename, so a crash
// leaves either the old state or the complete new file.
func (s *spool) put(jobID string, data []byte) error {
	size := int64(len(data))
	if size > s.max {
		return errTooLarge
	}
	tmp, err := os.CreateTemp(s.dir, "put-*"+tempExt)
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}

	name := fileName(jobID)
	s.mu.Lock()
	s.evictLocked(size, name)
	// File times come from a coarse clock; strictly increasing explicit
	// times keep the oldest-first order across a restart.
	now := time.Now()
	if !now.After(s.stamp) {
		now = s.stamp.Add(time.Microsecond)
	}
	s.stamp = now
	_ = os.Chtimes(tmp.Name(), now, now)
	err = os.Rename(tmp.Name(), filepath.Join(s.dir, name))
	if err == nil {
		if old, ok := s.entries[name]; ok {
			s.total -= old.size
		}
		s.seq++
		s.entries[name] = spoolEntry{size: size, seq: s.seq}
		s.total += size
	}
	s.mu.Unlock()
	if err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	syncDir(s.dir)
	return nil
}

// evictLocked drops the oldest results until incoming more bytes fit;
// keep is the name about to be replaced, which makes room by itself.
func (s *spool) evictLocked(incoming int64, keep string) {
	for {
		total := s.total + incoming
		if e, ok := s.entries[keep]; ok {
			total -= e.size
		}
		if total <= s.max || len(s.entries) == 0 {
			return
		}
		oldest, found := "", false
		var oldestSeq uint64
		for name, e := range s.entries {
			if name != keep && (!found || e.seq < oldestSeq) {
				oldest, oldestSeq, found = name, e.seq, true
			}
		}
		if !found {
			return
		}
		s.log.Warn("spool full: dropping the oldest unacknowledged result", "file", oldest, "spool_bytes", s.total, "max_bytes", s.max)
		s.removeLocked(oldest)
	}
}

func (s *spool) removeLocked(name string) {
	e, ok := s.entries[name]
	if !ok {
		return
	}
	if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("spool: cannot remove result", "file", name, "err", err)
	}
	s.total -= e.size
	delete(s.entries, name)
}

// remove drops jobID's result (acknowledged); unknown IDs are ignored.
func (s *spool) remove(jobID string) { s.removeName(fileName(jobID)) }

func (s *spool) removeName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(name)
}

func (s *spool) has(jobID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.entries[fileName(jobID)]
	return ok
}

// names lists the spooled results, oldest first.
func (s *spool) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.entries))
	for n := range s.entries {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(s.entries[a].seq, s.entries[b].seq) })
	return names
}

// read returns a spooled result; os.ErrNotExist once it was acknowledged.
func (s *spool) read(name string) ([]byte, error) {
	s.mu.Lock()
	e, ok := s.entries[name]
	s.mu.Unlock()
	if !ok {
		return nil, os.ErrNotExist
	}
	f, err := os.Open(filepath.Join(s.dir, name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The index bounds the read: a file grown behind our back is not
	// loaded whole.
	buf := make([]byte, e.size+1)
	n, err := f.ReadAt(buf, 0)
	if int64(n) != e.size {
		return nil, fmt.Errorf("spooled result %s changed size on disk (%v)", name, err)
	}
	return buf[:n], nil
}

func (s *spool) stats() (count int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries), s.total
}

// syncDir makes a rename durable; not every platform supports it, and a
// failure only weakens durability, so it is not an error.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	d.Close()
}
