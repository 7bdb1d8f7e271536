package monitor_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/certtest"
	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/probe"
	"github.com/certmon/certmon/internal/store"
	"github.com/certmon/certmon/internal/store/storetest"
	"github.com/certmon/certmon/internal/target"
)

// observationSource replaces the network: each monitor is "served" one of a
// set of chains, chosen by its ID and the current generation; bumping the
// generation gives every monitor a new certificate.
type observationSource struct {
	assessor   *assess.Assessor
	chains     [][][]byte
	generation int
}

func (o *observationSource) Check(ctx context.Context, c store.Claim) monitor.Outcome {
	m := c.Monitor
	t, _ := target.Parse(m.Target, "")
	chain := o.chains[(int(m.ID)+o.generation)%len(o.chains)]
	obs := &probe.Observation{Target: t, Address: "192.0.2.1:443", SNI: t.Host, Chain: chain,
		Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, StartedAt: time.Now()}
	r := o.assessor.Assess(ctx, obs, assess.Policy{WarnDays: 30, CritDays: 7, Hostname: t.Host}, certtest.Now)
	return monitor.Outcome{Result: &r, ChainDER: chain, At: time.Now().UTC()}
}

// BenchmarkIngest measures the server's check pipeline with the network
// replaced by in-process observations: claim due checks, assess, run the
// state machine, write state (and history, events and certificates when
// they change). It reports checks/s for three passes over the same
// monitors: first checks, unchanged certificates, changed certificates.
//
//	go test ./internal/monitor -run '^$' -bench Ingest -benchtime 1x
//	CERTMON_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test?sslmode=disable go test ...
func BenchmarkIngest(b *testing.B) {
	const monitors = 20000
	root := certtest.NewRootCA("Ingest Root")
	inter := root.Intermediate("Ingest Intermediate")
	var chains [][][]byte
	for i := range 200 {
		leaf := inter.Leaf([]string{fmt.Sprintf("h%d.example", i)}, certtest.WithDNS("*.example"))
		chains = append(chains, certtest.Chain(leaf, &inter.Cert))
	}
	for _, engine := range storetest.Engines {
		b.Run(engine, func(b *testing.B) {
			st, err := store.Open(context.Background(), storetest.DSN(b, engine), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			ctx := context.Background()
			ids := make([]int64, 0, monitors)
			for i := range monitors {
				m, err := st.CreateMonitor(ctx, store.Monitor{TeamID: store.DefaultTeamID, Target: fmt.Sprintf("h%d.example", i),
					Schedule: "24h", AgentPool: monitor.CloudPool}, time.Now())
				if err != nil {
					b.Fatal(err)
				}
				ids = append(ids, m.ID)
			}
			src := &observationSource{assessor: assess.New(assess.Config{Roots: certtest.Pool(root)}), chains: chains}
			pass := func(name string) {
				sched := monitor.NewScheduler(monitor.SchedulerConfig{Owner: "bench", Workers: 8, Batch: 500,
					Poll: 5 * time.Millisecond}, st, src, nil, nil)
				runCtx, stop := context.WithCancel(ctx)
				done := make(chan error, 1)
				start := time.Now()
				go func() { done <- sched.Run(runCtx) }()
				for {
					n, err := st.CountDue(ctx, time.Now())
					if err != nil {
						b.Fatal(err)
					}
					if n == 0 {
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				elapsed := time.Since(start)
				stop()
				<-done
				b.ReportMetric(float64(monitors)/elapsed.Seconds(), name+"-checks/s")
			}
			makeDue := func() {
				for _, id := range ids {
					if err := st.CheckNow(ctx, store.DefaultTeamID, id, time.Now()); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ResetTimer()
			for range b.N {
				pass("first")
				makeDue()
				pass("unchanged")
				src.generation++
				makeDue()
				pass("changed")
			}
		})
	}
}
