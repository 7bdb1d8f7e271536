package server

import (
	"context"
	"encoding/hex"
	"encoding/pem"
	"strings"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/store"
)

// CertificateSummary is a certificate seen by any monitor, with the check
// contract's field names.
type CertificateSummary struct {
	assess.Certificate
	FirstSeen time.Time `json:"first_seen"`
}

// CertificateDetail adds the PEM and where the certificate was served.
type CertificateDetail struct {
	assess.Certificate
	FirstSeen time.Time        `json:"first_seen"`
	PEM       string           `json:"pem"`
	UsedBy    []CertificateUse `json:"used_by"`
}

// CertificateUse says which monitor served a certificate, and when.
type CertificateUse struct {
	MonitorID int64      `json:"monitor_id"`
	Target    string     `json:"target"`
	FirstSeen time.Time  `json:"first_seen"`
	LastSeen  *time.Time `json:"last_seen" doc:"null while the monitor still serves it"`
}

type listCertificatesInput struct {
	ExpiringWithin string `query:"expiring_within" doc:"expires within this many days (30) or this Go duration (72h)"`
	Issuer         string `query:"issuer" doc:"substring of the issuer"`
	KeyType        string `query:"key_type" doc:"e.g. RSA, ECDSA, Ed25519"`
	Status         string `query:"status" enum:"OK,WARNING,CRITICAL,UNKNOWN" doc:"status of a monitor serving it"`
	Cursor         string `query:"cursor" doc:"next_cursor of the previous page"`
	Limit          int    `query:"limit" minimum:"1" maximum:"1000" default:"100"`
}

// CertificateList is one page of certificates.
type CertificateList struct {
	Certificates []CertificateSummary `json:"certificates"`
	NextCursor   *string              `json:"next_cursor" doc:"null on the last page"`
}

type certificateListBody struct{ Body CertificateList }

func (s *Server) listCertificates(ctx context.Context, in *listCertificatesInput) (*certificateListBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	within, err := parseWithin(in.ExpiringWithin)
	if err != nil {
		return nil, err
	}
	after := ""
	if in.Cursor != "" {
		if after, err = parseSHA256("cursor", in.Cursor); err != nil {
			return nil, err
		}
	}
	certs, next, err := s.store.ListCertificates(ctx, store.CertificateFilter{
		TeamID:         teamID,
		ExpiringWithin: within,
		Issuer:         in.Issuer,
		KeyType:        in.KeyType,
		Status:         assess.Status(in.Status),
		After:          after,
		Limit:          in.Limit,
		Now:            s.now(),
	})
	if err != nil {
		return nil, storeError(err, "certificates")
	}
	out := &certificateListBody{}
	out.Body.Certificates = make([]CertificateSummary, 0, len(certs))
	for _, c := range certs {
		out.Body.Certificates = append(out.Body.Certificates, CertificateSummary{
			Certificate: certInfo(c),
			FirstSeen:   c.FirstSeen.UTC().Truncate(time.Second),
		})
	}
	if next != "" {
		out.Body.NextCursor = &next
	}
	return out, nil
}

type getCertificateInput struct {
	SHA256 string `path:"sha256" doc:"SHA-256 of the DER, hex"`
}

type certificateBody struct{ Body CertificateDetail }

func (s *Server) getCertificate(ctx context.Context, in *getCertificateInput) (*certificateBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	fp, err := parseSHA256("sha256", in.SHA256)
	if err != nil {
		return nil, err
	}
	c, uses, err := s.store.GetCertificate(ctx, teamID, fp)
	if err != nil {
		return nil, storeError(err, "certificate "+fp)
	}
	d := CertificateDetail{
		Certificate: certInfo(c),
		FirstSeen:   c.FirstSeen.UTC().Truncate(time.Second),
		PEM:         string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER})),
		UsedBy:      make([]CertificateUse, 0, len(uses)),
	}
	for _, u := range uses {
		d.UsedBy = append(d.UsedBy, CertificateUse{
			MonitorID: u.MonitorID,
			Target:    u.Target,
			FirstSeen: u.FirstSeen.UTC().Truncate(time.Second),
			LastSeen:  timeOrNil(u.LastSeen),
		})
	}
	return &certificateBody{Body: d}, nil
}

// certInfo is the stored parsed form, keyed the way the API is.
func certInfo(c store.Certificate) assess.Certificate {
	info := c.Info
	info.SHA256 = c.SHA256
	info.SANs = orEmpty(info.SANs)
	return info
}

// parseSHA256 accepts 64 hex digits in either case (fingerprints are often
// pasted from tools that print upper case) and returns them lower case.
func parseSHA256(field, s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) != 64 {
		return "", invalid(field, "want 64 hex digits")
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", invalid(field, "want 64 hex digits")
	}
	return s, nil
}
