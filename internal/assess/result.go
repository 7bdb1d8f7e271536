package assess

// This file is the `certmon check --output json` contract of DESIGN.md:
// field names and meanings are relied on by other tools. Add fields; never
// rename or repurpose one.

// Status is the verdict for one target, ordered by severity.
type Status string

const (
	OK       Status = "OK"
	Warning  Status = "WARNING"
	Critical Status = "CRITICAL"
	Unknown  Status = "UNKNOWN"
)

// ExitCode is the Nagios plugin convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
func (s Status) ExitCode() int {
	switch s {
	case OK:
		return 0
	case Warning:
		return 1
	case Critical:
		return 2
	default:
		return 3
	}
}

// Worse returns the more severe of two statuses. UNKNOWN ranks above
// CRITICAL, as its exit code does.
func Worse(a, b Status) Status {
	if b.ExitCode() > a.ExitCode() {
		return b
	}
	return a
}

// Severity of a problem.
type Severity string

const (
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

// Problem codes. More may be added; these keep their meaning.
const (
	CodeExpired          = "EXPIRED"
	CodeExpiring         = "EXPIRING"
	CodeNotYetValid      = "NOT_YET_VALID"
	CodeHostnameMismatch = "HOSTNAME_MISMATCH"
	CodeSelfSigned       = "SELF_SIGNED"
	CodeUntrusted        = "UNTRUSTED"
	CodeIncompleteChain  = "INCOMPLETE_CHAIN"
	CodeRevoked          = "REVOKED"
	CodeWeakKey          = "WEAK_KEY"
	CodeWeakSignature    = "WEAK_SIGNATURE"
	CodeOldProtocol      = "OLD_PROTOCOL"
	CodeUnreachable      = "UNREACHABLE"
	CodeHandshakeFailed  = "HANDSHAKE_FAILED"
	CodeLint             = "LINT"
)

// Problem is one finding.
type Problem struct {
	Code     string   `json:"code"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
	// Lint names the zlint lint for code LINT.
	Lint string `json:"lint,omitempty"`
}

// TLSInfo is what was negotiated.
type TLSInfo struct {
	Version             string `json:"version"`
	Cipher              string `json:"cipher"`
	HandshakeMS         int64  `json:"handshake_ms"`
	OCSPStapled         bool   `json:"ocsp_stapled"`
	ClientAuthRequested bool   `json:"client_auth_requested"`
}

// Certificate is one certificate of the chain as sent.
type Certificate struct {
	Subject            string   `json:"subject"`
	Issuer             string   `json:"issuer"`
	Serial             string   `json:"serial"`
	NotBefore          string   `json:"not_before"`
	NotAfter           string   `json:"not_after"`
	DaysLeft           int      `json:"days_left"`
	SHA256             string   `json:"sha256"`
	KeyType            string   `json:"key_type"`
	KeyBits            int      `json:"key_bits"`
	SignatureAlgorithm string   `json:"signature_algorithm"`
	SANs               []string `json:"sans"`
	SelfSigned         bool     `json:"self_signed"`
	IsCA               bool     `json:"is_ca"`
}

// Revocation states.
const (
	RevocationGood       = "good"
	RevocationRevoked    = "revoked"
	RevocationUnknown    = "unknown"
	RevocationNotChecked = "not_checked"
)

// Verification is the judgement of trust.
type Verification struct {
	Trusted       bool   `json:"trusted"`
	HostnameMatch bool   `json:"hostname_match"`
	ChainComplete bool   `json:"chain_complete"`
	Revocation    string `json:"revocation"`
}

// Result is the outcome for one target: one JSON Lines object of
// `certmon check --output json`.
type Result struct {
	Target       string        `json:"target"`
	Protocol     string        `json:"protocol"`
	Address      string        `json:"address"`
	SNI          string        `json:"sni"`
	Status       Status        `json:"status"`
	Problems     []Problem     `json:"problems"`
	TLS          *TLSInfo      `json:"tls"`
	Chain        []Certificate `json:"chain"`
	Verification Verification  `json:"verification"`
	// Error is the probe or input error, null when there was none.
	Error *string `json:"error"`
}
