package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/certtest"
	"github.com/certmon/certmon/internal/notify"
	"github.com/certmon/certmon/internal/secret"
	"github.com/certmon/certmon/internal/store/storetest"
)

// webhookReceiver verifies signatures as a receiver should and records
// each item by its key (raw arrivals too, to count resends).
type webhookReceiver struct {
	mu      sync.Mutex
	secret  string
	delay   time.Duration
	items   map[string]map[string]any
	arrived map[string]int
	bodies  int
	bad     []string
	url     string
}

func startWebhook(t *testing.T, secret string, delay time.Duration) *webhookReceiver {
	t.Helper()
	w := &webhookReceiver{secret: secret, delay: delay, items: map[string]map[string]any{}, arrived: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
		err := notify.VerifySignature(w.secret, r.Header.Get(notify.HeaderTimestamp), body, r.Header.Get(notify.HeaderSignature), time.Now(), 5*time.Minute)
		var p struct {
			Version int              `json:"version"`
			Type    string           `json:"type"`
			Items   []map[string]any `json:"items"`
		}
		if err == nil {
			err = json.Unmarshal(body, &p)
		}
		if err == nil && (p.Version != 1 || p.Type != "certmon.notification" || len(p.Items) == 0) {
			err = fmt.Errorf("schema: version %d type %q items %d", p.Version, p.Type, len(p.Items))
		}
		w.mu.Lock()
		if err != nil {
			w.bad = append(w.bad, err.Error())
			w.mu.Unlock()
			http.Error(rw, err.Error(), http.StatusUnauthorized)
			return
		}
		w.bodies++
		for _, it := range p.Items {
			key, _ := it["key"].(string)
			w.arrived[key]++
			w.items[key] = it
		}
		w.mu.Unlock()
		time.Sleep(w.delay) // answered after the items were seen: a kill now leaves them unsettled
		rw.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	w.url = srv.URL + "/hook"
	return w
}

func (w *webhookReceiver) snapshot() (items map[string]map[string]any, arrivals int, bad []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	items = map[string]map[string]any{}
	for k, v := range w.items {
		items[k] = v
	}
	for _, n := range w.arrived {
		arrivals += n
	}
	return items, arrivals, append([]string{}, w.bad...)
}

// TestNotificationsEndToEnd: a monitor whose certificate expires in three
// days notifies at its first check, through a rule to a signed webhook
// and by email (a real SMTP server, STARTTLS and AUTH) to its recipient.
func TestNotificationsEndToEnd(t *testing.T) {
	ca := certtest.NewRootCA("certmon e2e CA")
	caFile := writeFile(t, "ca.pem", string(ca.Cert.PEM()))
	now := time.Now()
	leaf := ca.Leaf([]string{"127.0.0.1"}, certtest.WithValidity(now.Add(-80*24*time.Hour), now.Add(3*24*time.Hour-time.Hour)))
	target := certtest.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(leaf)}}).Addr
	// A real SMTP server: STARTTLS with a certificate of the test CA, and
	// AUTH PLAIN required.
	mailLeaf := ca.Leaf([]string{"127.0.0.1"}, certtest.WithValidity(now.Add(-time.Hour), now.Add(24*time.Hour)))
	box := certtest.ServeSMTP(t, certtest.SMTPOptions{
		TLS:  &tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(mailLeaf)}},
		User: "certmon", Pass: "mail-secret",
	})
	hook := startWebhook(t, "whsec-e2e", 0)
	smtpHost, smtpPort, _ := net.SplitHostPort(box.Addr)

	const token = "notify-e2e-token-0123456789"
	p := startServerProcess(t, "CERTMON_DATA="+t.TempDir(), "CERTMON_BOOTSTRAP_TOKEN="+token,
		"CERTMON_CA_FILE="+caFile, "CERTMON_CHECK_REVOCATION=off",
		"CERTMON_NOTIFICATIONS_BASE_URL=https://certmon.example.test",
		"CERTMON_NOTIFICATIONS_SMTP_HOST="+smtpHost, "CERTMON_NOTIFICATIONS_SMTP_PORT="+smtpPort,
		"CERTMON_NOTIFICATIONS_SMTP_TLS=starttls", "CERTMON_NOTIFICATIONS_SMTP_USERNAME=certmon",
		"CERTMON_NOTIFICATIONS_SMTP_PASSWORD=mail-secret", "CERTMON_NOTIFICATIONS_SMTP_FROM=certmon@example.test",
		"CERTMON_NOTIFICATIONS_SMTP_CA_FILE="+caFile,
		// The status report every minute, to see it sent through the real
		// mail server.
		"CERTMON_NOTIFICATIONS_REPORT_SCHEDULE=* * * * *", "CERTMON_NOTIFICATIONS_REPORT_TO=pki@example.test")
	c := api{t: t, base: p.base, token: token}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server output:\n%s", p.out)
		}
	})

	var ch struct {
		ID     int64          `json:"id"`
		Config map[string]any `json:"config"`
	}
	if code := c.do("POST", "/api/v1/channels", map[string]any{"name": "ops hook", "type": "webhook",
		"config": map[string]any{"url": hook.url, "secret": "whsec-e2e"}}, &ch); code != 201 {
		t.Fatalf("create channel: %d", code)
	}
	if s := fmt.Sprint(ch.Config); strings.Contains(s, "whsec-e2e") || strings.Contains(s, "/hook") {
		t.Errorf("channel config shown with its secrets: %v", ch.Config)
	}
	var test struct {
		OK   bool   `json:"ok"`
		Code int    `json:"code"`
		Body string `json:"body"`
	}
	if code := c.do("POST", fmt.Sprintf("/api/v1/channels/%d/test", ch.ID), nil, &test); code != 200 || !test.OK || test.Code != 200 || test.Body != "ok" {
		t.Fatalf("test message: %d %+v", code, test)
	}
	if code := c.do("POST", "/api/v1/rules", map[string]any{"name": "expiry to ops", "events": []string{"expiry_reminder", "expired"},
		"channels": []int64{ch.ID}}, nil); code != 201 {
		t.Fatalf("create rule: %d", code)
	}
	var mon monitorView
	if code := c.do("POST", "/api/v1/monitors", map[string]any{"target": target, "tags": []string{"prod"},
		"recipients": []string{"ops@example.test"}}, &mon); code != 201 {
		t.Fatalf("create monitor: %d", code)
	}

	var reminder map[string]any
	certtest.Eventually(t, 30*time.Second, "expiry reminder at the webhook", func() bool {
		items, _, _ := hook.snapshot()
		for _, it := range items {
			if it["kind"] == "expiry_reminder" {
				reminder = it
				return true
			}
		}
		return false
	})
	_, _, bad := hook.snapshot()
	if len(bad) > 0 {
		t.Errorf("webhook refused: %v", bad)
	}
	monitorObj, _ := reminder["monitor"].(map[string]any)
	if reminder["severity"] != "critical" || reminder["days_left"] != float64(2) || monitorObj["target"] != target ||
		monitorObj["link"] != fmt.Sprintf("https://certmon.example.test/api/v1/monitors/%d", mon.ID) {
		t.Errorf("reminder item %v", reminder)
	}
	if data, _ := reminder["data"].(map[string]any); data["threshold_days"] != float64(3) {
		t.Errorf("reminder threshold %v, want the 3-day threshold", data["threshold_days"])
	}

	var m certtest.Mail
	certtest.Eventually(t, 30*time.Second, "email to the monitor's recipient", func() bool {
		for _, x := range box.Mails() {
			if len(x.To) == 1 && x.To[0] == "ops@example.test" {
				m = x
				return true
			}
		}
		return false
	})
	if m.From != "certmon@example.test" || len(m.To) != 1 || m.To[0] != "ops@example.test" {
		t.Errorf("envelope from %s to %v", m.From, m.To)
	}
	msg := certtest.ParseMail(t, m.Data)
	if !strings.Contains(msg.Subject, target) {
		t.Errorf("subject %q does not name the target", msg.Subject)
	}
	if msg.Header.Get("Message-Id") == "" || msg.Header.Get(notify.HeaderKey) == "" {
		t.Errorf("no Message-ID or %s header: %v", notify.HeaderKey, msg.Header)
	}
	if !strings.Contains(msg.Text, target) || !strings.Contains(msg.HTML, target) {
		t.Errorf("text part %q, HTML part %q: want both naming the target", msg.Text, msg.HTML)
	}

	var ds struct {
		Deliveries []struct {
			Status    string `json:"status"`
			ChannelID *int64 `json:"channel_id"`
			Address   string `json:"address"`
		} `json:"deliveries"`
	}
	certtest.Eventually(t, 10*time.Second, "both deliveries recorded as sent", func() bool {
		c.do("GET", "/api/v1/deliveries?status=sent", nil, &ds)
		return len(ds.Deliveries) == 2
	})
	resp, err := http.Get(p.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `certmon_notifications_total{status="sent"} 2`) {
		t.Errorf("/metrics does not count the 2 sent deliveries")
	}

	// The status report arrives at the top of a minute.
	var report []byte
	certtest.Eventually(t, 75*time.Second, "the scheduled status report", func() bool {
		for _, x := range box.Mails() {
			if len(x.To) == 1 && x.To[0] == "pki@example.test" {
				report = x.Data
				return true
			}
		}
		return false
	})
	rp := certtest.ParseMail(t, report)
	if subj := rp.Subject; !strings.Contains(subj, "Status report") || !strings.Contains(subj, "1 critical") {
		t.Errorf("report subject %q", subj)
	}
	if !strings.Contains(rp.HTML, target) {
		t.Errorf("report HTML does not list %s", target)
	}
}

// TestOutboxSurvivesKill9 kills the server with SIGKILL three times while
// it writes check results and delivers their alerts one message each to a
// slow webhook, then lets it finish. Every monitor's alert must arrive
// (nothing lost), each alert's event must be made once (one key per
// monitor: a check re-run after the crash did not alert again), and a key
// may reach the receiver again only if it was in flight when a kill hit
// (at most the workers' concurrency per kill).
func TestOutboxSurvivesKill9(t *testing.T) {
	targets := newHandshakeLog(t) // self-signed: each monitor's first check alerts "invalid"
	hook := startWebhook(t, "whsec-kill9", 20*time.Millisecond)
	const (
		token   = "kill9-outbox-token-0123456789"
		n       = 150
		workers = 4
		kills   = 3
	)
	env := []string{"CERTMON_DATA=" + t.TempDir(), "CERTMON_BOOTSTRAP_TOKEN=" + token, "CERTMON_CHECK_REVOCATION=off",
		"CERTMON_SCHEDULER_WORKERS=8", fmt.Sprint("CERTMON_NOTIFICATIONS_WORKERS=", workers),
		// One item per message and no rate limit: many sends, so the
		// kills land between a send and its settlement.
		"CERTMON_NOTIFICATIONS_GROUP_MAX=1", "CERTMON_NOTIFICATIONS_RATE_PER_MINUTE=1000000",
		"CERTMON_NOTIFICATIONS_RETRY_MIN=1s", "CERTMON_NOTIFICATIONS_RETRY_MAX=2s"}
	p := startServerProcess(t, env...)
	c := api{t: t, base: p.base, token: token}
	var ch struct {
		ID int64 `json:"id"`
	}
	if code := c.do("POST", "/api/v1/channels", map[string]any{"name": "hook", "type": "webhook",
		"config": map[string]any{"url": hook.url, "secret": "whsec-kill9"}}, &ch); code != 201 {
		t.Fatalf("create channel: %d", code)
	}
	if code := c.do("POST", "/api/v1/rules", map[string]any{"name": "all", "channels": []int64{ch.ID}}, nil); code != 201 {
		t.Fatalf("create rule: %d", code)
	}
	for i := range n {
		if code := c.do("POST", "/api/v1/monitors", map[string]any{"target": targets.addr, "sni": fmt.Sprintf("n%d.test", i)}, nil); code != 201 {
			t.Fatalf("create monitor: %d", code)
		}
	}
	for k := 1; k <= kills; k++ {
		certtest.Eventually(t, 60*time.Second, "alerts flowing before the kill", func() bool {
			items, _, _ := hook.snapshot()
			return len(items) >= k*n/(kills+2)
		})
		p.kill9(t)
		p = startServerProcess(t, env...)
		c.base = p.base
	}
	certtest.Eventually(t, 90*time.Second, "every monitor's alert delivered", func() bool {
		items, _, _ := hook.snapshot()
		return len(items) >= n
	})
	time.Sleep(2 * time.Second) // anything still to come would be a duplicate
	items, arrivals, bad := hook.snapshot()
	if len(bad) > 0 {
		t.Errorf("webhook refused %d requests: %v", len(bad), bad[0])
	}
	perTarget := map[string]int{}
	for _, it := range items {
		if it["kind"] != "invalid" {
			t.Errorf("unexpected item %v", it)
		}
		perTarget[fmt.Sprint(it["event_id"])]++
	}
	if len(items) != n || len(perTarget) != n {
		t.Errorf("%d distinct keys for %d events, want %d of each: an alert was made twice", len(items), len(perTarget), n)
	}
	resent := arrivals - len(items)
	t.Logf("%d alerts, %d arrivals: %d resent after %d kills (each carried the same key)", len(items), arrivals, resent, kills)
	if resent > kills*workers {
		t.Errorf("%d resends after %d kills; only messages in flight at a kill (at most %d each) may go again", resent, kills, workers)
	}
	var ds struct {
		Deliveries []struct{} `json:"deliveries"`
	}
	for _, st := range []string{"pending", "dead"} {
		c.do("GET", "/api/v1/deliveries?status="+st, nil, &ds)
		if len(ds.Deliveries) != 0 {
			t.Errorf("%d deliveries %s at the end", len(ds.Deliveries), st)
		}
	}
}

// TestNotificationsAcrossReplicas runs three servers on one PostgreSQL
// database, sharing one secret key: their workers claim deliveries with
// SKIP LOCKED, so every alert reaches the webhook exactly once, whichever
// replica ran the check or sends the message.
func TestNotificationsAcrossReplicas(t *testing.T) {
	dsn := storetest.DSN(t, "postgres")
	targets := newHandshakeLog(t) // self-signed: one "invalid" alert per monitor
	hook := startWebhook(t, "whsec-replicas", 5*time.Millisecond)
	const token, n = "replicas-notify-token-0123456789", 200
	env := []string{"CERTMON_DATABASE_URL=" + dsn, "CERTMON_BOOTSTRAP_TOKEN=" + token, "CERTMON_CHECK_REVOCATION=off",
		"CERTMON_NOTIFICATIONS_SECRET_KEY=" + secret.NewKey(),
		"CERTMON_NOTIFICATIONS_GROUP_MAX=1", "CERTMON_NOTIFICATIONS_RATE_PER_MINUTE=1000000"}
	replicas := []*serverProcess{startServerProcess(t, env...), startServerProcess(t, env...), startServerProcess(t, env...)}
	c := api{t: t, base: replicas[0].base, token: token}
	var ch struct {
		ID int64 `json:"id"`
	}
	if code := c.do("POST", "/api/v1/channels", map[string]any{"name": "hook", "type": "webhook",
		"config": map[string]any{"url": hook.url, "secret": "whsec-replicas"}}, &ch); code != 201 {
		t.Fatalf("create channel: %d", code)
	}
	if code := c.do("POST", "/api/v1/rules", map[string]any{"name": "all", "channels": []int64{ch.ID}}, nil); code != 201 {
		t.Fatalf("create rule: %d", code)
	}
	for i := range n {
		// Spread the writes over the replicas too.
		c.base = replicas[i%len(replicas)].base
		if code := c.do("POST", "/api/v1/monitors", map[string]any{"target": targets.addr, "sni": fmt.Sprintf("r%d.test", i)}, nil); code != 201 {
			t.Fatalf("create monitor: %d", code)
		}
	}
	certtest.Eventually(t, 60*time.Second, "every alert delivered", func() bool {
		items, _, _ := hook.snapshot()
		return len(items) >= n
	})
	time.Sleep(2 * time.Second)
	items, arrivals, bad := hook.snapshot()
	if len(items) != n || arrivals != n || len(bad) > 0 {
		t.Errorf("%d alerts in %d arrivals (%d refused), want each of %d exactly once", len(items), arrivals, len(bad), n)
	}
	// The work was shared: each replica counts what it sent.
	sentRe := regexp.MustCompile(`certmon_notifications_total\{status="sent"\} (\d+)`)
	total, senders := 0, 0
	for _, r := range replicas {
		resp, err := http.Get(r.base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if m := sentRe.FindSubmatch(body); m != nil {
			k, _ := strconv.Atoi(string(m[1]))
			total += k
			senders++
		}
	}
	t.Logf("%d replicas sent %d messages", senders, total)
	if total != n || senders < 2 {
		t.Errorf("replicas sent %d messages between %d of them; want %d shared by at least 2", total, senders, n)
	}
}
