package agent

import (
	"errors"
	"strings"
	"testing"
)

func TestWebsocketURL(t *testing.T) {
	tests := []struct {
		raw      string
		insecure bool
		want     string
		err      string
	}{
		{raw: "https://certmon.example.com", want: "wss://certmon.example.com/api/v1/agent/connect"},
		{raw: "https://certmon.example.com:8443/prefix/", want: "wss://certmon.example.com:8443/prefix/api/v1/agent/connect"},
		{raw: "http://127.0.0.1:8080", want: "ws://127.0.0.1:8080/api/v1/agent/connect"},
		{raw: "http://[::1]:8080", want: "ws://[::1]:8080/api/v1/agent/connect"},
		{raw: "http://localhost:8080", want: "ws://localhost:8080/api/v1/agent/connect"},
		{raw: "http://certmon.internal:8080", insecure: true, want: "ws://certmon.internal:8080/api/v1/agent/connect"},
		{raw: "http://certmon.internal:8080", err: "clear text"},
		{raw: "http://10.0.0.5", err: "clear text"},
		{raw: "ftp://certmon.example.com", err: "want https://"},
		{raw: "certmon.example.com", err: "want https://"},
		{raw: "https://", err: "no host"},
		{raw: "https://user:pw@certmon.example.com", err: "credentials"},
		{raw: "https://certmon.example.com/?x=1", err: "query"},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			got, err := websocketURL(tc.raw, tc.insecure)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("= %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{ServerURL: "https://c.example", AgentID: "agt_1", Key: "k", SpoolDir: "/tmp/x"}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	tests := []struct {
		name string
		mut  func(*Config)
		err  string
	}{
		{"no server", func(c *Config) { c.ServerURL = "" }, "no server URL"},
		{"no id", func(c *Config) { c.AgentID = "" }, "no agent ID"},
		{"no key", func(c *Config) { c.Key = "" }, "no agent key"},
		{"key with newline", func(c *Config) { c.Key = "k\r\nX-Evil: 1" }, "agent key"},
		{"no spool", func(c *Config) { c.SpoolDir = "" }, "spool"},
		{"negative", func(c *Config) { c.Concurrency = -1 }, "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mut(&c)
			err := c.Validate()
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want ErrInvalidConfig containing %q", err, tc.err)
			}
		})
	}
}
