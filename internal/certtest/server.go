package certtest

import (
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"
)

// Server is a TLS listener on 127.0.0.1:0 that serves until the test ends.
type Server struct {
	Addr     string
	listener net.Listener
	wg       sync.WaitGroup
}

// Handler serves one accepted connection; it owns and closes it.
type Handler func(c net.Conn)

// Serve starts a listener on 127.0.0.1:0 running h for every connection,
// closed at the end of the test.
func Serve(t testing.TB, h Handler) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &Server{Addr: ln.Addr().String(), listener: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				h(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

// ServeTLS serves TLS with cfg, completing the handshake and then holding
// the connection until the client closes it.
func ServeTLS(t testing.TB, cfg *tls.Config) *Server {
	return Serve(t, TLSHandler(cfg))
}

// TLSHandler returns a Handler that does a TLS handshake with cfg, then
// reads until the client closes.
func TLSHandler(cfg *tls.Config) Handler {
	return func(c net.Conn) {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		tc := tls.Server(c, cfg)
		if err := tc.Handshake(); err != nil {
			return
		}
		buf := make([]byte, 512)
		for {
			if _, err := tc.Read(buf); err != nil {
				return
			}
		}
	}
}
