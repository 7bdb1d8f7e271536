package probe

import (
	"errors"
	"fmt"
	"io"
)

// ldapStartTLSOID names the StartTLS extended operation (RFC 4511 4.14.1).
const ldapStartTLSOID = "1.3.6.1.4.1.1466.20037"

// ldapStartTLSRequest is, in BER:
//
//	LDAPMessage ::= SEQUENCE {                  30 1d
//	    messageID 1                             02 01 01
//	    extendedReq [APPLICATION 23] SEQUENCE { 77 18
//	        requestName [0] ldapStartTLSOID     80 16 ...
//	}}
const ldapStartTLSRequest = "\x30\x1d\x02\x01\x01\x77\x18\x80\x16" + ldapStartTLSOID

// BER tags the response uses.
const (
	berInteger         = 0x02
	berOctetString     = 0x04
	berEnumerated      = 0x0a
	berSequence        = 0x30
	ldapExtendedResTag = 0x78 // [APPLICATION 24], constructed
)

var errBERTruncated = errors.New("truncated BER element")

// berLength decodes a definite BER length from b (which starts at the
// length octet): the length and how many octets encode it. It rejects the
// indefinite form, which LDAP forbids, and lengths over MaxPreambleBytes.
func berLength(b []byte) (n, size int, err error) {
	if len(b) == 0 {
		return 0, 0, errBERTruncated
	}
	first := b[0]
	if first < 0x80 {
		return int(first), 1, nil
	}
	k := int(first & 0x7f)
	switch {
	case k == 0:
		return 0, 0, errors.New("indefinite BER length")
	case k > 4:
		return 0, 0, &lengthError{What: fmt.Sprintf("a %d-octet BER length", k), Limit: MaxPreambleBytes}
	case len(b) < 1+k:
		return 0, 0, errBERTruncated
	}
	var v uint64
	for _, c := range b[1 : 1+k] {
		v = v<<8 | uint64(c)
	}
	if v > MaxPreambleBytes {
		return 0, 0, &lengthError{What: "BER length", N: v, Limit: MaxPreambleBytes}
	}
	return int(v), 1 + k, nil
}

// berNext splits the first element off b: its tag, contents and the rest.
func berNext(b []byte) (tag byte, val, rest []byte, err error) {
	if len(b) < 2 {
		return 0, nil, nil, errBERTruncated
	}
	tag = b[0]
	if tag&0x1f == 0x1f {
		return 0, nil, nil, fmt.Errorf("unsupported multi-octet BER tag 0x%02x", tag)
	}
	n, size, err := berLength(b[1:])
	if err != nil {
		return 0, nil, nil, err
	}
	start := 1 + size
	if len(b)-start < n {
		return 0, nil, nil, errBERTruncated
	}
	return tag, b[start : start+n], b[start+n:], nil
}

// berInt decodes a small non-negative INTEGER or ENUMERATED.
func berInt(val []byte) (int, error) {
	if len(val) == 0 || len(val) > 4 || val[0]&0x80 != 0 {
		return 0, fmt.Errorf("unsupported BER integer % x", val)
	}
	n := 0
	for _, c := range val {
		n = n<<8 | int(c)
	}
	return n, nil
}

// readLDAPMessage reads exactly one LDAPMessage from r and returns its
// contents (inside the outer SEQUENCE), never reading beyond it.
func readLDAPMessage(r io.Reader) ([]byte, error) {
	const what = "the StartTLS response"
	hdr := make([]byte, 2, 6)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, readFailed("ldap", what, err)
	}
	if hdr[0] != berSequence {
		return nil, protoErr("ldap", "not an LDAP message: starts with % x", hdr)
	}
	if hdr[1] > 0x80 && hdr[1] <= 0x84 {
		hdr = hdr[:2+int(hdr[1]&0x7f)]
		if _, err := io.ReadFull(r, hdr[2:]); err != nil {
			return nil, readFailed("ldap", what, err)
		}
	}
	n, _, err := berLength(hdr[1:])
	if err != nil {
		return nil, fmt.Errorf("ldap: response header % x: %w", hdr, err)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, readFailed("ldap", what, err)
	}
	return msg, nil
}

// ldapResponse is the part of an ExtendedResponse (RFC 4511 4.12) we judge.
type ldapResponse struct {
	MessageID  int
	ResultCode int
	Diagnostic string
}

// parseLDAPResponse decodes the contents of an LDAPMessage holding an
// ExtendedResponse; referrals, the response name and controls are ignored.
func parseLDAPResponse(msg []byte) (ldapResponse, error) {
	var res ldapResponse
	tag, val, rest, err := berNext(msg)
	if err != nil {
		return res, err
	}
	if tag != berInteger {
		return res, fmt.Errorf("messageID has tag 0x%02x", tag)
	}
	if res.MessageID, err = berInt(val); err != nil {
		return res, err
	}
	tag, op, _, err := berNext(rest)
	if err != nil {
		return res, err
	}
	if tag != ldapExtendedResTag {
		return res, fmt.Errorf("expected an ExtendedResponse, got tag 0x%02x", tag)
	}
	tag, val, op, err = berNext(op)
	if err != nil {
		return res, err
	}
	if tag != berEnumerated {
		return res, fmt.Errorf("resultCode has tag 0x%02x", tag)
	}
	if res.ResultCode, err = berInt(val); err != nil {
		return res, err
	}
	for i := 0; i < 2; i++ { // matchedDN, then diagnosticMessage
		if tag, val, op, err = berNext(op); err != nil {
			return res, err
		}
		if tag != berOctetString {
			return res, fmt.Errorf("LDAPResult string has tag 0x%02x", tag)
		}
	}
	res.Diagnostic = string(val)
	return res, nil
}

// ldapResultNames names the result codes a StartTLS refusal carries.
var ldapResultNames = map[int]string{
	1:  "operationsError",
	2:  "protocolError",
	3:  "timeLimitExceeded",
	11: "adminLimitExceeded",
	13: "confidentialityRequired",
	50: "insufficientAccessRights",
	51: "busy",
	52: "unavailable",
	53: "unwillingToPerform",
	80: "other",
}

func (r ldapResponse) result() string {
	s := fmt.Sprintf("result code %d", r.ResultCode)
	if name, ok := ldapResultNames[r.ResultCode]; ok {
		s += " (" + name + ")"
	}
	if r.Diagnostic != "" {
		s += ": " + quote(r.Diagnostic)
	}
	return s
}

// startLDAP sends the StartTLS extended request (RFC 4511 4.14) and reads
// its response.
func startLDAP(c *PreambleConn, _ PreambleOptions) error {
	if err := c.WriteString(ldapStartTLSRequest); err != nil {
		return err
	}
	msg, err := readLDAPMessage(c.R)
	if err != nil {
		return err
	}
	res, err := parseLDAPResponse(msg)
	if err != nil {
		return protoErr("ldap", "malformed StartTLS response: %v", err)
	}
	switch {
	case res.MessageID == 0:
		// An unsolicited notification, usually a notice of disconnection.
		return protoErr("ldap", "server sent a notice of disconnection: %s", res.result())
	case res.MessageID != 1:
		return protoErr("ldap", "response to unknown message ID %d", res.MessageID)
	case res.ResultCode != 0:
		return protoErr("ldap", "StartTLS refused: %s", res.result())
	}
	return nil
}
