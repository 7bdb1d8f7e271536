package agent

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/certmon/certmon/internal/probe"
)

// maxFetchedIssuers bounds what an agent adds to a result from AIA.
const maxFetchedIssuers = 4

// fetchRevocation fills obs with the leaf's revocation state and any AIA
// issuers, fetched from here: the monitor's responders (internal OCSP,
// CRL and AIA URLs) are reachable only inside this network. The server
// still judges; it only uses these answers instead of fetching.
func (a *Agent) fetchRevocation(ctx context.Context, obs *probe.Observation) {
	if len(obs.Chain) == 0 {
		return
	}
	leaf, err := x509.ParseCertificate(obs.Chain[0])
	if err != nil {
		return
	}
	issuer := issuerIn(leaf, obs.Chain[1:])
	if issuer == nil {
		for _, u := range leaf.IssuingCertificateURL {
			certs, err := a.fetcher.FetchIssuer(ctx, u)
			if err != nil {
				continue
			}
			for _, c := range certs {
				if len(obs.Issuers) < maxFetchedIssuers {
					obs.Issuers = append(obs.Issuers, c.Raw)
				}
				if issuer == nil && leaf.CheckSignatureFrom(c) == nil {
					issuer = c
				}
			}
			if issuer != nil {
				break
			}
		}
	}
	st := a.fetcher.Check(ctx, leaf, issuer, obs.OCSPStaple, time.Now())
	obs.Revocation = &probe.RevocationReport{State: string(st.State), Source: st.Source, Reason: st.Reason, RevokedAt: st.RevokedAt}
}

// issuerIn finds leaf's issuer among the certificates the server sent.
func issuerIn(leaf *x509.Certificate, sent [][]byte) *x509.Certificate {
	for _, der := range sent {
		c, err := x509.ParseCertificate(der)
		if err == nil && leaf.CheckSignatureFrom(c) == nil {
			return c
		}
	}
	return nil
}
