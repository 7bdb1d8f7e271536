package revocation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// State is the revocation verdict for one certificate.
type State string

// States, spelled as the JSON contract's verification.revocation.
const (
	Good    State = "good"
	Revoked State = "revoked"
	Unknown State = "unknown"
)

// Status is the answer of Check.
type Status struct {
	State State
	// Source names what answered: "stapled OCSP", "OCSP", "CRL".
	Source string
	// RevokedAt and ReasonCode (RFC 5280 CRLReason) are set for Revoked.
	RevokedAt  time.Time
	ReasonCode int
	// Reason explains the verdict for messages and logs: why the state is
	// Unknown, or the revocation reason.
	Reason string
}

// Check decides whether leaf, issued by issuer, is revoked at now: a valid
// stapled OCSP response first, then the OCSP responders named in the
// certificate, then its CRL distribution points. Anything that fails along
// the way only moves on to the next source; if none answers the result is
// Unknown, never Revoked.
func (f *Fetcher) Check(ctx context.Context, leaf, issuer *x509.Certificate, staple []byte, now time.Time) Status {
	if leaf == nil || issuer == nil {
		return Status{State: Unknown, Reason: "issuer certificate not available"}
	}
	// Each source is bounded by the fetch timeout; this bounds them all,
	// should a certificate name several dead servers.
	ctx, cancel := context.WithTimeout(ctx, checkBudget*f.timeout)
	defer cancel()
	var why []string
	if len(staple) > 0 {
		st, err := checkOCSPResponse(staple, leaf, issuer, now)
		if err == nil && st.State != Unknown {
			st.Source = "stapled OCSP"
			return st
		}
		if err == nil {
			err = fmt.Errorf("%s", st.Reason)
		}
		why = append(why, "stapled OCSP response: "+err.Error())
	}
	if st, err := f.checkOCSP(ctx, leaf, issuer, now); err == nil {
		return st
	} else if err != errNoSource {
		why = append(why, "OCSP: "+err.Error())
	}
	if st, err := f.checkCRL(ctx, leaf, issuer, now); err == nil {
		return st
	} else if err != errNoSource {
		why = append(why, "CRL: "+err.Error())
	}
	if len(why) == 0 {
		return Status{State: Unknown, Reason: "certificate names no OCSP responder or CRL"}
	}
	f.log.Debug("revocation unknown", "serial", leaf.SerialNumber.Text(16), "why", why)
	return Status{State: Unknown, Reason: strings.Join(why, "; ")}
}

// ReasonText names an RFC 5280 CRLReason code.
func ReasonText(code int) string {
	switch code {
	case 0:
		return "unspecified"
	case 1:
		return "keyCompromise"
	case 2:
		return "cACompromise"
	case 3:
		return "affiliationChanged"
	case 4:
		return "superseded"
	case 5:
		return "cessationOfOperation"
	case 6:
		return "certificateHold"
	case 8:
		return "removeFromCRL"
	case 9:
		return "privilegeWithdrawn"
	case 10:
		return "aACompromise"
	}
	return fmt.Sprintf("reason %d", code)
}

// checkBudget is how many fetch timeouts one Check may spend in all.
const checkBudget = 3

// errNoSource means the certificate names no URL of a kind.
var errNoSource = errors.New("no URL in certificate")

// firstURLs keeps at most maxURLs entries of urls.
func firstURLs(urls []string) []string {
	if len(urls) > maxURLs {
		return urls[:maxURLs]
	}
	return urls
}
