package revocation

import (
	"bytes"
	"context"
	"encoding/asn1"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/certmon/certmon/internal/certtest"
)

// p7c builds a DER PKCS#7 "certs-only" bundle, as CAs publish at .p7c URLs.
func p7c(ders ...[]byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(1)
				b.AddASN1(cbasn1.SET, func(*cryptobyte.Builder) {})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1})
				})
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					for _, d := range ders {
						b.AddBytes(d)
					}
				})
				b.AddASN1(cbasn1.SET, func(*cryptobyte.Builder) {})
			})
		})
	})
	return b.BytesOrPanic()
}

func TestFetchIssuer(t *testing.T) {
	root := certtest.NewRootCA("AIA Root")
	ca := root.Intermediate("AIA CA")
	pki := certtest.NewPKI(t)
	tests := []struct {
		name    string
		url     string
		want    int    // certificates expected
		wantErr string // substring of the error
	}{
		{name: "DER", url: pki.IssuerURL(&ca.Cert), want: 1},
		{name: "PEM bundle", url: pki.Publish("/aia/bundle.pem", append(ca.PEM(), root.PEM()...)), want: 2},
		{name: "PKCS#7", url: pki.Publish("/aia/ca.p7c", p7c(ca.DER, root.DER)), want: 2},
		{name: "not a certificate", url: pki.Publish("/aia/junk", []byte("hello")), wantErr: "neither a certificate"},
		{name: "too large", url: pki.Publish("/aia/big.cer", bytes.Repeat([]byte{0x30}, maxAIABytes+1)), wantErr: "larger than"},
		{name: "missing", url: pki.URL + "/aia/missing.cer", wantErr: "404"},
		{name: "https is not fetched", url: strings.Replace(pki.URL, "http:", "https:", 1) + "/aia/x.cer", wantErr: "only http://"},
		{name: "ldap is not fetched", url: "ldap://ldap.test/cn=CA", wantErr: "only http://"},
	}
	f := newFetcher(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certs, err := f.FetchIssuer(context.Background(), tt.url)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(certs) != tt.want || !certs[0].Equal(ca.Cert.Cert) {
				t.Fatalf("got %d certificates, want %d starting with the CA", len(certs), tt.want)
			}
		})
	}
	before := pki.Hits("file")
	if _, err := f.FetchIssuer(context.Background(), tests[0].url); err != nil {
		t.Fatal(err)
	}
	if pki.Hits("file") != before {
		t.Error("a cached issuer was fetched again")
	}
}
