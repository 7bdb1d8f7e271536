package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"
)

// ocspAnswer is a parsed response whose signature has been verified for the
// certificate and issuer named by its cache key.
type ocspAnswer struct {
	resp *ocsp.Response
}

// staleAfter bounds the age of a response that names no nextUpdate.
const staleAfter = 7 * 24 * time.Hour

// checkOCSPResponse parses and verifies a DER OCSP response for leaf.
func checkOCSPResponse(der []byte, leaf, issuer *x509.Certificate, now time.Time) (Status, error) {
	// ParseResponseForCert checks the serial and the signature: by the
	// issuer, or by an embedded responder certificate the issuer signed.
	resp, err := ocsp.ParseResponseForCert(der, leaf, issuer)
	if err != nil {
		return Status{}, err
	}
	return judgeOCSP(resp, leaf, issuer, now)
}

// judgeOCSP applies the checks ParseResponseForCert leaves to the caller:
// the delegated responder's authorisation and the response's freshness.
func judgeOCSP(resp *ocsp.Response, leaf, issuer *x509.Certificate, now time.Time) (Status, error) {
	if resp.SerialNumber == nil || resp.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		return Status{}, errors.New("response is for another certificate")
	}
	if rc := resp.Certificate; rc != nil && !bytes.Equal(rc.Raw, issuer.Raw) {
		if !slices.Contains(rc.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
			return Status{}, fmt.Errorf("responder certificate %s is not authorised for OCSP signing", rc.Subject)
		}
		if now.Before(rc.NotBefore) || now.After(rc.NotAfter) {
			return Status{}, fmt.Errorf("responder certificate %s is not valid at %s", rc.Subject, now.UTC().Format(time.RFC3339))
		}
	}
	if resp.ThisUpdate.After(now.Add(clockSkew)) {
		return Status{}, fmt.Errorf("response is not yet valid (thisUpdate %s)", resp.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if resp.Status == ocsp.Revoked {
		// A signed statement of revocation stays true after nextUpdate:
		// revocation is final, so freshness is not required here.
		return Status{State: Revoked, RevokedAt: resp.RevokedAt, ReasonCode: resp.RevocationReason,
			Reason: ReasonText(resp.RevocationReason)}, nil
	}
	if !resp.NextUpdate.IsZero() && resp.NextUpdate.Before(now.Add(-clockSkew)) {
		return Status{}, fmt.Errorf("response is stale (nextUpdate %s)", resp.NextUpdate.UTC().Format(time.RFC3339))
	}
	if resp.NextUpdate.IsZero() && now.Sub(resp.ThisUpdate) > staleAfter {
		return Status{}, fmt.Errorf("response is stale (thisUpdate %s, no nextUpdate)", resp.ThisUpdate.UTC().Format(time.RFC3339))
	}
	switch resp.Status {
	case ocsp.Good:
		return Status{State: Good}, nil
	case ocsp.Unknown:
		return Status{State: Unknown, Reason: "responder does not know the certificate"}, nil
	}
	return Status{}, fmt.Errorf("unexpected OCSP status %d", resp.Status)
}

// checkOCSP asks the responders the certificate names, in turn, until one
// gives a definite answer.
func (f *Fetcher) checkOCSP(ctx context.Context, leaf, issuer *x509.Certificate, now time.Time) (Status, error) {
	urls := firstURLs(leaf.OCSPServer)
	if len(urls) == 0 {
		return Status{}, errNoSource
	}
	req, err := ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return Status{}, fmt.Errorf("building request: %w", err)
	}
	var errs []string
	for _, u := range urls {
		// The request names issuer key hash and serial: one answer per
		// certificate and responder.
		key := u + "\x00" + string(req)
		ans, err := f.ocsp.do(ctx, key, now, func() (*ocspAnswer, time.Time, error) {
			body, err := f.queryOCSP(ctx, u, req)
			if err != nil {
				return nil, time.Time{}, fmt.Errorf("%s: %w", u, err)
			}
			resp, err := ocsp.ParseResponseForCert(body, leaf, issuer)
			if err != nil {
				return nil, time.Time{}, fmt.Errorf("%s: %w", u, err)
			}
			return &ocspAnswer{resp: resp}, capTTL(now, resp.NextUpdate), nil
		})
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		st, err := judgeOCSP(ans.resp, leaf, issuer, now)
		if err != nil {
			errs = append(errs, u+": "+err.Error())
			continue
		}
		if st.State == Unknown {
			errs = append(errs, u+": "+st.Reason)
			continue
		}
		st.Source = "OCSP"
		return st, nil
	}
	return Status{}, errors.New(strings.Join(errs, "; "))
}

// queryOCSP sends req by GET when it is short enough (cacheable by proxies,
// RFC 5019), by POST otherwise.
func (f *Fetcher) queryOCSP(ctx context.Context, server string, req []byte) ([]byte, error) {
	b64 := base64.StdEncoding.EncodeToString(req)
	if len(b64) < f.getLimit {
		return f.fetch(ctx, strings.TrimSuffix(server, "/")+"/"+url.QueryEscape(b64), nil, "", maxOCSPBytes)
	}
	return f.fetch(ctx, server, req, "application/ocsp-request", maxOCSPBytes)
}
