package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/store/storetest"
)

// cuttableProxy forwards TCP to a backend and can cut every connection and
// refuse new ones, as a database that goes away would.
type cuttableProxy struct {
	addr, backend string
	mu            sync.Mutex
	ln            net.Listener
	conns         []net.Conn
}

func newCuttableProxy(t *testing.T, backend string) *cuttableProxy {
	p := &cuttableProxy{backend: backend}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *cuttableProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.backend)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
}

func (p *cuttableProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *cuttableProxy) restore(t *testing.T) {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("re-listen on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

func statusOf(t *testing.T, u string) int {
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestDatabaseOutage cuts the server off from PostgreSQL for a while:
// /readyz reports it, /healthz stays up, and once the database is back the
// scheduler carries on with no monitor lost.
func TestDatabaseOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 45 s")
	}
	dsn := storetest.DSN(t, "postgres")
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCuttableProxy(t, u.Host)
	u.Host = proxy.addr
	targets := newHandshakeLog(t)
	p := startServerProcess(t, "CERTMON_DATABASE_URL="+u.String(), "CERTMON_BOOTSTRAP_TOKEN=outage-test-token-0123456789",
		"CERTMON_CHECK_REVOCATION=off", "CERTMON_SCHEDULER_LEASE=5s", "CERTMON_SCHEDULER_POLL=200ms")
	c := api{t: t, base: p.base, token: "outage-test-token-0123456789"}
	const n = 40
	for i := range n {
		body := map[string]any{"target": targets.addr, "sni": fmt.Sprintf("o%d.test", i), "schedule": "30s"}
		if code := c.do("POST", "/api/v1/monitors", body, nil); code != 201 {
			t.Fatalf("create: %d", code)
		}
	}
	time.Sleep(3 * time.Second)
	if statusOf(t, p.base+"/readyz") != 200 {
		t.Fatal("not ready before the outage")
	}

	proxy.cut()
	outage := time.Now()
	deadline := outage.Add(10 * time.Second)
	for statusOf(t, p.base+"/readyz") != 503 {
		if time.Now().After(deadline) {
			t.Fatal("/readyz still 200 with the database gone")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if statusOf(t, p.base+"/healthz") != 200 {
		t.Error("/healthz failed during the outage: the process is alive")
	}
	time.Sleep(10 * time.Second)
	proxy.restore(t)
	restored := time.Now()
	deadline = restored.Add(15 * time.Second)
	for statusOf(t, p.base+"/readyz") != 200 {
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not recover")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Every monitor's slot came during or after the outage (30 s
	// interval); each must be checked again once the store is back.
	time.Sleep(32 * time.Second)
	for i := range n {
		runs := targets.times(fmt.Sprintf("o%d.test", i))
		var after int
		for _, r := range runs {
			if r.After(restored) {
				after++
			}
		}
		if after == 0 {
			t.Errorf("monitor o%d not checked after the database came back: %v", i, fmtTimes(runs))
		}
	}
	var page struct {
		Monitors []monitorView `json:"monitors"`
	}
	if code := c.do("GET", "/api/v1/monitors?limit=100", nil, &page); code != 200 || len(page.Monitors) != n {
		t.Errorf("monitors after the outage: %d, %d", code, len(page.Monitors))
	}
	p.stop(t)
}
