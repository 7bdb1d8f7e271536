package probe

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// pgSSLRequest is the startup message asking for TLS: length 8, then the
// request code 80877103 (PostgreSQL protocol, "SSLRequest").
const pgSSLRequest = "\x00\x00\x00\x08\x04\xd2\x16\x2f"

// maxPGError bounds an ErrorResponse read before TLS; real ones are a few
// hundred bytes.
const maxPGError = 8 << 10

// startPostgres sends SSLRequest and reads the one-byte answer.
func startPostgres(c *PreambleConn, _ PreambleOptions) error {
	if err := c.WriteString(pgSSLRequest); err != nil {
		return err
	}
	return readPostgresAnswer(c.R)
}

// readPostgresAnswer reads the answer to SSLRequest: 'S' (go ahead), 'N'
// (no TLS here) or an ErrorResponse, never more than those bytes.
func readPostgresAnswer(r io.Reader) error {
	const what = "the SSLRequest answer"
	var b [5]byte
	if _, err := io.ReadFull(r, b[:1]); err != nil {
		return readFailed("postgres", what, err)
	}
	switch b[0] {
	case 'S':
		return nil
	case 'N':
		return protoErr("postgres", "server does not accept TLS")
	case 'E':
	default:
		return protoErr("postgres", "unexpected answer %q to SSLRequest", b[0])
	}
	// An ErrorResponse: Int32 length (itself included), then fields.
	if _, err := io.ReadFull(r, b[1:5]); err != nil {
		return readFailed("postgres", what, err)
	}
	n := binary.BigEndian.Uint32(b[1:5])
	if n > maxPGError {
		return fmt.Errorf("postgres: %w", &lengthError{What: "error response", N: uint64(n), Limit: maxPGError})
	}
	if n < 4 {
		return protoErr("postgres", "malformed error response length %d", n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return readFailed("postgres", what, err)
	}
	return protoErr("postgres", "server refused the connection: %s", quote(parsePostgresError(body)))
}

// parsePostgresError renders an ErrorResponse body (fields of a type byte
// and a NUL-terminated string, ending with a NUL) as "SEVERITY CODE: message".
func parsePostgresError(body []byte) string {
	fields := map[byte]string{}
	for len(body) > 0 && body[0] != 0 {
		typ := body[0]
		val, rest, found := bytes.Cut(body[1:], []byte{0})
		if _, seen := fields[typ]; !seen {
			fields[typ] = string(val)
		}
		if !found {
			break
		}
		body = rest
	}
	severity := fields['V'] // not localised; 'S' is, and older servers send only it
	if severity == "" {
		severity = fields['S']
	}
	parts := []string{}
	for _, s := range []string{severity, fields['C']} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	msg := fields['M']
	if msg == "" {
		msg = "(no message)"
	}
	if len(parts) == 0 {
		return msg
	}
	return strings.Join(parts, " ") + ": " + msg
}
