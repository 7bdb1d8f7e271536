package revocation

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// FetchIssuer downloads the certificates at an AIA caIssuers URL: DER (one
// or several concatenated), PEM, or a PKCS#7 "certs-only" bundle (.p7c).
// Results are cached by URL for an hour of wall-clock time.
func (f *Fetcher) FetchIssuer(ctx context.Context, u string) ([]*x509.Certificate, error) {
	now := f.now()
	certs, err := f.aia.do(ctx, u, now, func() ([]*x509.Certificate, time.Time, error) {
		body, err := f.fetch(ctx, u, nil, "", maxAIABytes)
		if err != nil {
			return nil, time.Time{}, err
		}
		certs, err := parseIssuers(body)
		if err != nil {
			return nil, time.Time{}, err
		}
		return certs, now.Add(aiaTTL), nil
	})
	if err != nil {
		return nil, fmt.Errorf("fetching issuer from %s: %w", u, err)
	}
	return certs, nil
}

func parseIssuers(body []byte) ([]*x509.Certificate, error) {
	if bytes.Contains(body, []byte("-----BEGIN")) {
		var certs []*x509.Certificate
		for rest := body; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, err
			}
			certs = append(certs, c)
		}
		if len(certs) == 0 {
			return nil, errors.New("no certificate in PEM response")
		}
		return certs, nil
	}
	if certs, err := x509.ParseCertificates(body); err == nil && len(certs) > 0 {
		return certs, nil
	}
	certs, err := parsePKCS7(body)
	if err != nil {
		return nil, errors.New("response is neither a certificate (DER or PEM) nor a PKCS#7 bundle")
	}
	return certs, nil
}

var oidSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}

// parsePKCS7 extracts the certificates of a DER PKCS#7 SignedData (RFC
// 5652), the "certs-only" form CAs publish as .p7c. Signatures are not
// looked at: chain verification judges the certificates.
func parsePKCS7(der []byte) ([]*x509.Certificate, error) {
	in := cryptobyte.String(der)
	var ci, content, sd, certs cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !in.ReadASN1(&ci, cbasn1.SEQUENCE) ||
		!ci.ReadASN1ObjectIdentifier(&oid) || !oid.Equal(oidSignedData) ||
		!ci.ReadASN1(&content, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!content.ReadASN1(&sd, cbasn1.SEQUENCE) ||
		!sd.SkipASN1(cbasn1.INTEGER) || // version
		!sd.SkipASN1(cbasn1.SET) || // digestAlgorithms
		!sd.SkipASN1(cbasn1.SEQUENCE) { // encapContentInfo
		return nil, errors.New("not a PKCS#7 SignedData")
	}
	var present bool
	if !sd.ReadOptionalASN1(&certs, &present, cbasn1.Tag(0).Constructed().ContextSpecific()) || !present {
		return nil, errors.New("PKCS#7 bundle holds no certificates")
	}
	return x509.ParseCertificates(certs)
}
