package revocation

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"
)

// cache is a bounded LRU of values that expire, which also merges
// concurrent fetches of one key: a fleet of servers sharing one CA must not
// download the same CRL a hundred times at once.
type cache[V any] struct {
	mu      sync.Mutex
	max     int
	lru     *list.List // front = most recently used
	items   map[string]*list.Element
	flights map[string]*flight[V]
}

type entry[V any] struct {
	key     string
	val     V
	expires time.Time
}

var errAborted = errors.New("fetch aborted")

type flight[V any] struct {
	done chan struct{}
	val  V
	err  error
}

func newCache[V any](max int) *cache[V] {
	return &cache[V]{max: max, lru: list.New(), items: map[string]*list.Element{}, flights: map[string]*flight[V]{}}
}

func (c *cache[V]) get(key string, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.getLocked(key, now)
}

func (c *cache[V]) getLocked(key string, now time.Time) (V, bool) {
	var zero V
	el, ok := c.items[key]
	if !ok {
		return zero, false
	}
	e := el.Value.(*entry[V])
	if !now.Before(e.expires) {
		c.lru.Remove(el)
		delete(c.items, key)
		return zero, false
	}
	c.lru.MoveToFront(el)
	return e.val, true
}

func (c *cache[V]) put(key string, val V, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value = &entry[V]{key: key, val: val, expires: expires}
		c.lru.MoveToFront(el)
		return
	}
	c.items[key] = c.lru.PushFront(&entry[V]{key: key, val: val, expires: expires})
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.items, old.Value.(*entry[V]).key)
	}
}

// do returns the cached value for key or runs fetch once for all concurrent
// callers. fetch returns the value and until when it may be reused; a zero
// time or an error means "do not cache".
func (c *cache[V]) do(ctx context.Context, key string, now time.Time, fetch func() (V, time.Time, error)) (V, error) {
	c.mu.Lock()
	if v, ok := c.getLocked(key, now); ok {
		c.mu.Unlock()
		return v, nil
	}
	if f, ok := c.flights[key]; ok {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.val, f.err
		case <-ctx.Done():
			var zero V
			return zero, ctx.Err()
		}
	}
	f := &flight[V]{done: make(chan struct{})}
	c.flights[key] = f
	c.mu.Unlock()

	// Deferred so that waiters are released even if fetch panics.
	defer func() {
		c.mu.Lock()
		delete(c.flights, key)
		c.mu.Unlock()
		close(f.done)
	}()
	f.err = errAborted // replaced below unless fetch panics
	v, expires, err := fetch()
	f.val, f.err = v, err
	if err == nil && expires.After(now) {
		c.put(key, v, expires)
	}
	return v, err
}
