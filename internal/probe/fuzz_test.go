package probe

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
)

// Every fuzzer feeds server bytes both to one parser and to the whole
// dialogue (over fakeConn): neither may panic, and a dialogue may never
// claim to have read more than the server sent.

// seedScripts adds the server scripts of proto's dialogue cases.
func seedScripts(f *testing.F, proto string, extra ...string) {
	for _, c := range dialogueCases {
		if c.proto == proto {
			f.Add([]byte(c.script))
		}
	}
	for _, s := range extra {
		f.Add([]byte(s))
	}
}

func fuzzDialogue(t *testing.T, proto string, data []byte) {
	_, unread, err := runDialogue(proto, data, PreambleOptions{Host: "example.org", ClientName: "certmon.invalid"})
	if err == nil && !strings.HasSuffix(string(data), unread) {
		t.Fatalf("%s: unread bytes %q are not the end of the input", proto, unread)
	}
}

func memReader(data []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(data)) }

func FuzzSMTPReply(f *testing.F) {
	seedScripts(f, "smtp", "250-a\r\n250-b\n250 c\r\n", "250-\r\n250", "2\xff0 x\r\n")
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := readSMTPReply(memReader(data), "fuzz")
		if err == nil {
			if r.Code < 100 || r.Code > 599 || len(r.Lines) == 0 {
				t.Fatalf("accepted reply %+v", r)
			}
			offersSTARTTLS(r)
		}
		fuzzDialogue(t, "smtp", data)
	})
}

func FuzzFTPReply(f *testing.F) {
	seedScripts(f, "ftp", "220-a\r\n220\r\n", "220-\r\n220-\r\n")
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := readFTPReply(memReader(data), "fuzz")
		if err == nil && (r.Code < 100 || r.Code > 599 || len(r.Lines) == 0) {
			t.Fatalf("accepted reply %+v", r)
		}
		fuzzDialogue(t, "ftp", data)
	})
}

func FuzzIMAP(f *testing.F) {
	seedScripts(f, "imap", "*\r\na001\r\n", "* ok\r\nA001 OK\r\n")
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, line := range strings.Split(string(data), "\n") {
			_ = checkIMAPGreeting(line)
			if done, err := imapStartTLSAnswer(line); done && err != nil {
				t.Fatalf("%q: done with an error %v", line, err)
			}
		}
		fuzzDialogue(t, "imap", data)
	})
}

func FuzzPOP3(f *testing.F) {
	seedScripts(f, "pop3", "+ok\r\n+OK\r\n", "+OK")
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, line := range strings.Split(string(data), "\n") {
			_ = checkPOP3(line, "fuzz", "refused")
		}
		fuzzDialogue(t, "pop3", data)
	})
}

func FuzzLDAPResponse(f *testing.F) {
	seedScripts(f, "ldap", "\x30\x84\x00\x00\x00\x03\x02\x01\x01", "\x30\x03\x02\x81\x01", "\x30\x05\x02\x01\x01\x78\x00")
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := readLDAPMessage(bytes.NewReader(data))
		if err == nil {
			if len(msg) > len(data) || len(msg) > MaxPreambleBytes {
				t.Fatalf("message of %d bytes from %d", len(msg), len(data))
			}
			_, _ = parseLDAPResponse(msg)
		}
		_, _ = parseLDAPResponse(data)
		fuzzDialogue(t, "ldap", data)
	})
}

func FuzzXMPPFeatures(f *testing.F) {
	seedScripts(f, "xmpp", "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>",
		"<stream:error><a xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", "<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>")
	f.Fuzz(func(t *testing.T, data []byte) {
		d := xml.NewDecoder(memReader(data))
		_, _ = readXMPPFeatures(d, "xmpp")
		_ = readXMPPProceed(xml.NewDecoder(memReader(data)), "xmpp")
		fuzzDialogue(t, "xmpp", data)
	})
}

func FuzzPostgresAnswer(f *testing.F) {
	seedScripts(f, "postgres", "E\x00\x00\x00\x04", "E\x00\x00\x00\x08M\x00\x00\x00", "E\x00\x00\x00\x07Mx")
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = readPostgresAnswer(bytes.NewReader(data))
		_ = parsePostgresError(data)
		fuzzDialogue(t, "postgres", data)
	})
}

func FuzzMySQLHandshake(f *testing.F) {
	seedScripts(f, "mysql", "\x01\x00\x00\x00\xff", "\x05\x00\x00\x00\x0a\x00abc")
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, payload, err := readMySQLPacket(bytes.NewReader(data)); err == nil && len(payload) > len(data) {
			t.Fatalf("payload of %d bytes from %d", len(payload), len(data))
		}
		_, _ = parseMySQLHandshake(data)
		fuzzDialogue(t, "mysql", data)
	})
}
