package checker_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/certtest"
	"github.com/certmon/certmon/internal/checker"
	"github.com/certmon/certmon/internal/probe"
	"golang.org/x/net/dns/dnsmessage"
)

func newChecker(t *testing.T, ca *certtest.CA) *checker.Checker {
	t.Helper()
	return checker.New(checker.Config{
		Prober:      probe.New(probe.Options{Timeout: 3 * time.Second}),
		Assessor:    assess.New(assess.Config{Roots: certtest.Pool(ca)}),
		Policy:      assess.Policy{WarnDays: 30, CritDays: 7},
		Concurrency: 4,
		Now:         func() time.Time { return certtest.Now },
	})
}

// TestRunStreams shows results leave before the input ends: a consumer of
// a 100,000-line file sees output at once and memory does not grow with
// the list.
func TestRunStreams(t *testing.T) {
	ca := certtest.NewRootCA("Root")
	leaf := ca.Leaf([]string{"127.0.0.1"})
	srv := certtest.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(leaf)}})
	chk := newChecker(t, ca)

	jobs := make(chan checker.Job)
	firstResult := make(chan struct{})
	var produced atomic.Int32
	go func() {
		defer close(jobs)
		for {
			select {
			case jobs <- checker.Job{Raw: srv.Addr}:
				produced.Add(1)
			case <-firstResult:
				return
			}
		}
	}()
	var got int
	err := chk.Run(context.Background(), jobs, func(r *assess.Result) error {
		if r.Status != assess.OK {
			t.Errorf("status %s: %+v", r.Status, r.Problems)
		}
		if got == 0 {
			close(firstResult)
		}
		got++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got == 0 || int(produced.Load()) != got {
		t.Errorf("produced %d, emitted %d", produced.Load(), got)
	}
	if got > 50 {
		t.Errorf("the first result waited for %d jobs: not streaming", got)
	}
}

func TestRunInvalidTargetAndEmitError(t *testing.T) {
	ca := certtest.NewRootCA("Root")
	chk := newChecker(t, ca)
	jobs := make(chan checker.Job, 3)
	jobs <- checker.Job{Raw: "bad target!", Origin: "list.txt:3"}
	jobs <- checker.Job{Raw: "also bad!"}
	jobs <- checker.Job{Raw: "still bad!"}
	close(jobs)
	var results []*assess.Result
	stop := errors.New("stdout closed")
	err := chk.Run(context.Background(), jobs, func(r *assess.Result) error {
		results = append(results, r)
		return stop
	})
	if !errors.Is(err, stop) {
		t.Fatalf("emit error not returned: %v", err)
	}
	if len(results) != 1 {
		t.Fatalf("emit called %d times after failing", len(results))
	}
	r := results[0]
	if r.Status != assess.Unknown || r.Error == nil || !strings.Contains(*r.Error, "invalid target") {
		t.Errorf("result %+v", r)
	}
}

func TestReadTargets(t *testing.T) {
	in := "# comment\n\nexample.com  # trailing comment\n  smtp://mx.example.com:587\n"
	jobs := make(chan checker.Job, 10)
	if err := checker.ReadTargets(context.Background(), strings.NewReader(in), "t.txt", jobs); err != nil {
		t.Fatal(err)
	}
	close(jobs)
	var got []string
	for j := range jobs {
		got = append(got, j.Raw+"@"+j.Origin)
	}
	want := "example.com@t.txt:3 smtp://mx.example.com:587@t.txt:4"
	if strings.Join(got, " ") != want {
		t.Errorf("got %v", got)
	}
	long := strings.Repeat("a", 70<<10)
	err := checker.ReadTargets(context.Background(), strings.NewReader(long), "t.txt", make(chan checker.Job, 1))
	if err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("overlong line: %v", err)
	}
}

// fakeDNS answers every A query for name with addrs, on a loopback UDP
// port, so a real resolver path is tested without any traffic leaving.
func fakeDNS(t *testing.T, addrs ...[4]byte) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			hdr, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: hdr.ID, Response: true, Authoritative: true})
			b.StartQuestions()
			b.Question(q)
			b.StartAnswers()
			if q.Type == dnsmessage.TypeA {
				for _, a := range addrs {
					b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: a})
				}
			}
			msg, _ := b.Finish()
			pc.WriteTo(msg, from)
		}
	}()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

// TestAllAddresses probes every address of a name separately: two
// "load balancer" backends on 127.0.0.1 and 127.0.0.2 serve different
// certificates, and each gets its own result.
func TestAllAddresses(t *testing.T) {
	ca := certtest.NewRootCA("Root")
	first := ca.Leaf([]string{"lb.test"})
	second := ca.Leaf([]string{"other.test"})
	ln1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln1.Addr().String())
	ln2, err := net.Listen("tcp", "127.0.0.2:"+port)
	if err != nil {
		ln1.Close()
		t.Skipf("cannot listen on 127.0.0.2:%s: %v", port, err)
	}
	for ln, leaf := range map[net.Listener]*certtest.Cert{ln1: first, ln2: second} {
		handler := certtest.TLSHandler(&tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(leaf)}})
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go handler(c)
			}
		}()
		t.Cleanup(func() { ln.Close() })
	}
	chk := checker.New(checker.Config{
		Prober:       probe.New(probe.Options{Timeout: 3 * time.Second, Resolver: fakeDNS(t, [4]byte{127, 0, 0, 1}, [4]byte{127, 0, 0, 2})}),
		Assessor:     assess.New(assess.Config{Roots: certtest.Pool(ca)}),
		Policy:       assess.Policy{WarnDays: 30, CritDays: 7},
		AllAddresses: true,
		Now:          func() time.Time { return certtest.Now },
	})
	jobs := make(chan checker.Job, 1)
	jobs <- checker.Job{Raw: "lb.test:" + port}
	close(jobs)
	got := map[string]assess.Status{}
	err = chk.Run(context.Background(), jobs, func(r *assess.Result) error {
		got[r.Address] = r.Status
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]assess.Status{"127.0.0.1:" + port: assess.OK, "127.0.0.2:" + port: assess.Critical}
	if len(got) != 2 || got["127.0.0.1:"+port] != want["127.0.0.1:"+port] || got["127.0.0.2:"+port] != want["127.0.0.2:"+port] {
		t.Errorf("results by address %v, want %v (the second backend serves a certificate for another name)", got, want)
	}
}
