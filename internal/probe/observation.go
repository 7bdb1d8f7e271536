package probe

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"time"

	"github.com/certmon/certmon/internal/target"
)

// Observation is what one probe saw, exactly as the server sent it. It holds
// no judgement: package assess turns it into a Result.
type Observation struct {
	Target target.Target `json:"target"`
	// Address is the ip:port (or host:port through a proxy) that was dialed.
	Address string `json:"address"`
	// SNI is the server name sent in the ClientHello ("" for none).
	SNI       string    `json:"sni"`
	StartedAt time.Time `json:"started_at"`

	// Chain is the DER certificates in the order the server sent them.
	Chain [][]byte `json:"chain,omitempty"`
	// Parsed is crypto/tls's parse of Chain after a complete handshake, so
	// it is not parsed twice; never serialised (agents send DER).
	Parsed []*x509.Certificate `json:"-"`
	// OCSPStaple is the stapled OCSP response, if any.
	OCSPStaple []byte `json:"ocsp_staple,omitempty"`
	// Version and CipherSuite are the negotiated values; 0 when the
	// handshake did not complete.
	Version             uint16 `json:"version,omitempty"`
	CipherSuite         uint16 `json:"cipher_suite,omitempty"`
	ClientAuthRequested bool   `json:"client_auth_requested"`

	Connect   time.Duration `json:"connect_ns"`
	StartTLS  time.Duration `json:"starttls_ns"`
	Handshake time.Duration `json:"handshake_ns"`
	Attempts  int           `json:"attempts"`

	// Err is nil on a complete handshake.
	Err *Error `json:"error,omitempty"`

	// Revocation and Issuers are what an agent fetched itself when its
	// monitor asks for it (revocation_from: agent): OCSP/CRL answers and
	// AIA issuers from responders reachable only inside its network.
	Revocation *RevocationReport `json:"revocation,omitempty"`
	Issuers    [][]byte          `json:"issuers,omitempty"`
}

// RevocationReport is a revocation answer obtained by an agent.
type RevocationReport struct {
	State     string    `json:"state"` // good, revoked or unknown
	Source    string    `json:"source,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// HandshakeComplete reports whether TLS was negotiated.
func (o *Observation) HandshakeComplete() bool { return o.Version != 0 }

// Stage names where a probe failed.
type Stage string

const (
	StageResolve   Stage = "resolve"
	StageConnect   Stage = "connect"
	StageStartTLS  Stage = "starttls"
	StageHandshake Stage = "handshake"
	// StagePostHandshake is a failure after the certificate arrived, such as
	// a server that rejects the client for lacking a client certificate.
	StagePostHandshake Stage = "post-handshake"
)

// Error is a typed probe failure. It survives a JSON round trip (agents send
// Observations to the server), so it carries its message as text.
type Error struct {
	Stage   Stage  `json:"stage"`
	Timeout bool   `json:"timeout,omitempty"`
	Message string `json:"message"`
	err     error
}

func (e *Error) Error() string { return string(e.Stage) + ": " + e.Message }

// Unwrap gives the original error where the Observation was not serialised.
func (e *Error) Unwrap() error { return e.err }

// Reachable reports whether the failure happened after a connection was made.
func (e *Error) Reachable() bool {
	return e.Stage != StageResolve && e.Stage != StageConnect
}

func newError(stage Stage, err error) *Error {
	e := &Error{Stage: stage, Message: err.Error(), err: err}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		e.Timeout = true
	}
	if errors.Is(err, errDeadline) {
		e.Timeout = true
	}
	return e
}

// VersionName returns the contract spelling of a TLS version ("TLS 1.3").
func VersionName(v uint16) string {
	if v == 0 {
		return ""
	}
	return tls.VersionName(v)
}

// CipherName returns the IANA name of a cipher suite.
func CipherName(id uint16) string {
	if id == 0 {
		return ""
	}
	return tls.CipherSuiteName(id)
}
