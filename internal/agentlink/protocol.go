// Package agentlink is the protocol between the server and its self-hosted
// agents: one WebSocket the agent dials out on, JSON messages in an
// envelope with a type and a protocol version, and the agent credentials.
//
// Compatibility: an agent and a server one protocol version apart still
// work. Both sides ignore unknown fields and unknown message types (logging
// them), and a side never sends a message type the peer's announced
// version does not know.
package agentlink

import (
	"encoding/json"
	"time"

	"github.com/certmon/certmon/internal/probe"
)

// ProtocolVersion is this build's protocol version.
const ProtocolVersion = 1

// Path is the WebSocket endpoint on the server, under its HTTPS port.
const Path = "/api/v1/agent/connect"

// Headers the agent authenticates with on the upgrade request.
const (
	HeaderAgentID = "X-Certmon-Agent-Id"
	// The key goes in "Authorization: Bearer KEY".
	HeaderProtocol = "X-Certmon-Protocol"
)

// MaxMessageBytes bounds one message either way; a result holds at most
// probe.MaxChainCerts certificates.
const MaxMessageBytes = 1 << 20

// Message types.
const (
	TypeHello   = "hello"   // agent → server, first message
	TypeWelcome = "welcome" // server → agent, answer to hello
	TypeJob     = "job"     // server → agent
	TypeResult  = "result"  // agent → server
	TypeAck     = "ack"     // server → agent: result stored (or refused for good)
	TypeStatus  = "status"  // agent → server, periodic: queue depth, counters
	TypeRevoked = "revoked" // server → agent: credentials revoked or expired; the agent stops
)

// Envelope wraps every message.
type Envelope struct {
	Type string          `json:"type"`
	V    int             `json:"v"`
	Body json.RawMessage `json:"body,omitempty"`
}

// Hello is the agent's first message.
type Hello struct {
	AgentID  string `json:"agent_id"`
	Version  string `json:"version"` // certmon build version
	Hostname string `json:"hostname"`
	// AllowNetworks is the agent's own --allow-networks, for display.
	AllowNetworks []string `json:"allow_networks,omitempty"`
	QueueDepth    int      `json:"queue_depth"`
}

// Welcome answers Hello.
type Welcome struct {
	ServerVersion string        `json:"server_version"`
	Heartbeat     time.Duration `json:"heartbeat_ns"`
	// KeyExpiresAt warns the agent of its key's expiry.
	KeyExpiresAt time.Time `json:"key_expires_at"`
}

// Job asks the agent to probe one target. JobID identifies the check slot
// (monitor and scheduled time); a result is ingested at most once per job.
type Job struct {
	JobID    string        `json:"job_id"`
	Target   string        `json:"target"`
	Protocol string        `json:"protocol,omitempty"`
	SNI      string        `json:"sni,omitempty"`
	Timeout  time.Duration `json:"timeout_ns"`
	// Deadline is when the server stops waiting (the lease).
	Deadline time.Time `json:"deadline"`
	// FetchRevocation asks the agent to fetch OCSP/CRL and AIA issuers
	// itself and report them in the Observation (responders reachable
	// only inside its network). Older agents ignore it.
	FetchRevocation bool `json:"fetch_revocation,omitempty"`
}

// Result is the agent's answer: the raw Observation (the server assesses),
// or Refused when the target is outside the agent's allowed networks or
// cannot be parsed.
type Result struct {
	JobID       string             `json:"job_id"`
	Observation *probe.Observation `json:"observation,omitempty"`
	Refused     string             `json:"refused,omitempty"`
}

// Ack tells the agent a result needs no resending.
type Ack struct {
	JobID string `json:"job_id"`
	// Error, when set, says why the result was not used (unknown job,
	// lease lost); it is still acknowledged so the agent drops it.
	Error string `json:"error,omitempty"`
}

// Status is the agent's periodic report.
type Status struct {
	QueueDepth int   `json:"queue_depth"`
	JobsDone   int64 `json:"jobs_done"`
	Errors     int64 `json:"errors"`
}

// Revoked tells the agent its credentials no longer work.
type Revoked struct {
	Reason string `json:"reason"`
}

// Encode wraps body in an envelope of type t.
func Encode(t string, body any) ([]byte, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return json.Marshal(Envelope{Type: t, V: ProtocolVersion, Body: raw})
}
