package assess

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// defaultCacheSize bounds the verification cache: enough for the distinct
// chains of a large fleet, a few KiB each.
const defaultCacheSize = 10000

// verifyCache remembers, per distinct chain as sent, its parse and its
// trust verdict, so a certificate served by a thousand endpoints is parsed
// and verified once. The key is a hash of the chain; the roots are those of
// the Assessor that owns the cache and never change, so they need no place
// in the key. Concurrent misses for one chain are merged. A nil
// *verifyCache caches nothing.
type verifyCache struct {
	mu      sync.Mutex
	max     int
	lru     *list.List // of *cacheEntry, most recently used first
	items   map[[32]byte]*list.Element
	flights map[[32]byte]*cacheFlight
}

type cacheEntry struct {
	key [32]byte
	p   *parsedChain
	v   *verdict
}

type cacheFlight struct {
	done chan struct{}
	v    *verdict
}

func newVerifyCache(max int) *verifyCache {
	if max < 0 {
		return nil
	}
	if max == 0 {
		max = defaultCacheSize
	}
	return &verifyCache{max: max, lru: list.New(), items: map[[32]byte]*list.Element{}, flights: map[[32]byte]*cacheFlight{}}
}

// lookup returns the cached parse of a chain and its latest verdict.
func (c *verifyCache) lookup(key [32]byte) (*parsedChain, *verdict) {
	if c == nil {
		return nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, nil
	}
	c.lru.MoveToFront(el)
	e := el.Value.(*cacheEntry)
	return e.p, e.v
}

// verdict returns a verdict for the chain that holds at verify time t:
// cached, computed by a concurrent caller, or computed now by verify.
func (c *verifyCache) verdict(ctx context.Context, key [32]byte, p *parsedChain, t time.Time, verify func() *verdict) *verdict {
	if c == nil {
		return verify()
	}
	c.mu.Lock()
	if el, ok := c.items[key]; ok {
		if v := el.Value.(*cacheEntry).v; v != nil && v.holds(t) {
			c.lru.MoveToFront(el)
			c.mu.Unlock()
			return v
		}
	}
	if f, ok := c.flights[key]; ok {
		c.mu.Unlock()
		select {
		case <-f.done:
			if f.v != nil && f.v.holds(t) {
				return f.v
			}
		case <-ctx.Done():
		}
		// The other caller judged another instant or we gave up
		// waiting: verify alone.
		return verify()
	}
	f := &cacheFlight{done: make(chan struct{})}
	c.flights[key] = f
	c.mu.Unlock()

	defer func() {
		c.mu.Lock()
		delete(c.flights, key)
		c.mu.Unlock()
		close(f.done)
	}()
	v := verify()
	f.v = v
	// A verdict reached while our caller was giving up may rest on an
	// aborted AIA fetch: do not keep it.
	if ctx.Err() == nil {
		c.put(key, p, v)
	}
	return v
}

func (c *verifyCache) put(key [32]byte, p *parsedChain, v *verdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &cacheEntry{key: key, p: p, v: v}
	if el, ok := c.items[key]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	c.items[key] = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).key)
	}
}

// len reports the number of cached chains.
func (c *verifyCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
