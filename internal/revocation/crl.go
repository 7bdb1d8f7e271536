package revocation

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// crlInfo is a fetched CRL whose signature was verified against the issuer
// named by its cache key, indexed by serial for quick look-ups.
type crlInfo struct {
	thisUpdate, nextUpdate time.Time
	revoked                map[string]crlEntry
}

// crlEntry keeps only what a look-up needs; the parsed entries hold raw
// bytes and extensions that would double the memory of a large CRL.
type crlEntry struct {
	at     time.Time
	reason int
}

// removeFromCRL is the CRLReason that un-lists a certificate on hold.
const removeFromCRL = 8

// checkCRL looks the leaf's serial up in the CRLs it names, in turn, until
// one gives a definite answer.
func (f *Fetcher) checkCRL(ctx context.Context, leaf, issuer *x509.Certificate, now time.Time) (Status, error) {
	urls := firstURLs(leaf.CRLDistributionPoints)
	if len(urls) == 0 {
		return Status{}, errNoSource
	}
	issuerID := sha256.Sum256(issuer.Raw)
	serial := leaf.SerialNumber.Text(16)
	var errs []string
	for _, u := range urls {
		info, err := f.crl.do(ctx, u+"\x00"+string(issuerID[:]), now, func() (*crlInfo, time.Time, error) {
			info, err := f.fetchCRL(ctx, u, issuer)
			if err != nil {
				return nil, time.Time{}, err
			}
			return info, capTTL(now, info.nextUpdate), nil
		})
		if err != nil {
			errs = append(errs, u+": "+err.Error())
			continue
		}
		if e, ok := info.revoked[serial]; ok && e.reason != removeFromCRL {
			// Listed is revoked even in a stale CRL: revocation is final.
			return Status{State: Revoked, Source: "CRL", RevokedAt: e.at,
				ReasonCode: e.reason, Reason: ReasonText(e.reason)}, nil
		}
		switch {
		case info.thisUpdate.After(now.Add(clockSkew)):
			errs = append(errs, fmt.Sprintf("%s: CRL is not yet valid (thisUpdate %s)", u, info.thisUpdate.UTC().Format(time.RFC3339)))
		case !info.nextUpdate.IsZero() && info.nextUpdate.Before(now.Add(-clockSkew)):
			errs = append(errs, fmt.Sprintf("%s: CRL is stale (nextUpdate %s)", u, info.nextUpdate.UTC().Format(time.RFC3339)))
		default:
			return Status{State: Good, Source: "CRL"}, nil
		}
	}
	return Status{}, errors.New(strings.Join(errs, "; "))
}

func (f *Fetcher) fetchCRL(ctx context.Context, u string, issuer *x509.Certificate) (*crlInfo, error) {
	der, err := f.fetch(ctx, u, nil, "", maxCRLBytes)
	if err != nil {
		return nil, err
	}
	if bytes.HasPrefix(der, []byte("-----BEGIN")) {
		return nil, errors.New("CRL is PEM, not DER")
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(rl.RawIssuer, issuer.RawSubject) {
		return nil, fmt.Errorf("CRL is issued by %s, not by %s", rl.Issuer, issuer.Subject)
	}
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("CRL signature: %w", err)
	}
	info := &crlInfo{thisUpdate: rl.ThisUpdate, nextUpdate: rl.NextUpdate,
		revoked: make(map[string]crlEntry, len(rl.RevokedCertificateEntries))}
	for _, e := range rl.RevokedCertificateEntries {
		if e.SerialNumber == nil {
			continue
		}
		info.revoked[e.SerialNumber.Text(16)] = crlEntry{at: e.RevocationTime, reason: e.ReasonCode}
	}
	return info, nil
}
